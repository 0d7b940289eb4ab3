"""Tenants: every endpoint and delivery has an owner, and an event reaches only its
owner's endpoints. A real Redis, a real worker and real receivers."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import as_bytes, as_bytes_list, event
from tests.test_cli import assert_one_line_error, invoke
from webhooks import (
    DeliveryNotFound,
    EndpointNotFound,
    InvalidInput,
    TenantExists,
    TenantNotFound,
    deliver,
    get_endpoints,
    get_store,
    get_tenants,
    publish,
    recover,
    redeliver,
)
from webhooks.clock import now
from webhooks.dev.receiver import Receiver
from webhooks.models import DeliveryStatus

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    with Receiver() as a, Receiver() as b, Receiver() as c:
        yield [a, b, c]


@pytest.fixture
def three_tenants() -> Iterator[list[str]]:
    ids = [f"acct_{name}_{uuid.uuid4().hex[:6]}" for name in "abc"]
    for tenant_id in ids:
        get_tenants().add(tenant_id)
    yield ids
    for tenant_id in ids:
        get_tenants().delete(tenant_id)


def test_an_event_reaches_only_its_tenants_endpoints(
    three_tenants, receivers, wait_for, other_event_type
):
    endpoints = get_endpoints()
    for tenant_id, receiver in zip(three_tenants, receivers, strict=True):
        endpoints.add(receiver.url("/ok/main"), ["screenshot_set.approved"], tenant=tenant_id)
    a, _, c = three_tenants
    rx_a, rx_b, rx_c = receivers
    # A second endpoint of A's, and a third that filters the type out.
    second, _ = endpoints.add(rx_a.url("/ok/second"), tenant=a)
    endpoints.add(rx_a.url("/ok/filtered"), [other_event_type], tenant=a)

    ids = publish(event(), tenant=a)
    assert len(ids) == 2
    deliveries = [wait_for(delivery_id) for delivery_id in ids]
    assert all(d.status is DeliveryStatus.DELIVERED and d.tenant_id == a for d in deliveries)
    assert {d.endpoint_id for d in deliveries} >= {second.id}
    time.sleep(0.3)
    assert sorted(r.path for r in rx_a.received()) == ["/ok/main", "/ok/second"]
    assert rx_b.received() == [] and rx_c.received() == []

    # A tenant whose endpoints all filter the type out gets an empty list.
    endpoints.delete(endpoints.all(c)[0].id)
    endpoints.add(rx_c.url("/ok/other"), [other_event_type], tenant=c)
    assert publish(event(), tenant=c) == []
    with pytest.raises(TenantNotFound, match="acct_nobody"):
        publish(event(), tenant="acct_nobody")


def test_listing_and_stats_by_tenant_show_exactly_its_deliveries(
    three_tenants, receivers, wait_for
):
    a, b, _ = three_tenants
    endpoint_a, _ = get_endpoints().add(receivers[0].url("/ok/list"), tenant=a)
    failing_a, _ = get_endpoints().add(receivers[0].url("/status/500"), tenant=a)
    get_endpoints().add(receivers[1].url("/ok/list"), tenant=b)
    ids_a = [i for _ in range(3) for i in publish(event(), tenant=a)]
    ids_b = publish(event(), tenant=b)
    for delivery_id in ids_a + ids_b:
        wait_for(delivery_id)
    bare = deliver.delay(receivers[2].url("/ok/bare"), event()).id  # no tenant
    wait_for(bare)

    listed = json.loads(invoke("list", "--tenant", a, "--json", "--limit", "100").stdout)
    assert sorted(d["id"] for d in listed) == sorted(ids_a)
    assert {
        (d["tenant_id"], d["endpoint_id"] in (endpoint_a.id, failing_a.id)) for d in listed
    } == {(a, True)}
    exhausted = json.loads(
        invoke("list", "--tenant", a, "--status", "retries_exhausted", "--json").stdout
    )
    assert {d["endpoint_id"] for d in exhausted} == {failing_a.id} and len(exhausted) == 3
    by_endpoint = get_store().recent(endpoint_id=endpoint_a.id, limit=100)
    assert {d.endpoint_id for d in by_endpoint} == {endpoint_a.id} and len(by_endpoint) == 3
    assert [d.id for d in get_store().recent(DeliveryStatus.DELIVERED, tenant=b)] == ids_b

    stats = json.loads(invoke("stats", "--tenant", a, "--json").stdout)
    assert stats == {
        "pending": 0,
        "retrying": 0,
        "delivered": 3,
        "retries_exhausted": 3,
        "overdue": 0,
    }
    assert json.loads(invoke("stats", "--tenant", b, "--json").stdout)["delivered"] == 1
    shown = json.loads(invoke("show", bare, "--json").stdout)
    assert (shown["tenant_id"], shown["endpoint_id"]) == (None, None)
    assert_one_line_error(invoke("list", "--tenant", "acct_nobody"), "acct_nobody")
    assert_one_line_error(invoke("stats", "--tenant", "acct_nobody"), "acct_nobody")
    # Another tenant's endpoint is not found, as a missing one is.
    assert_one_line_error(
        invoke("list", "--tenant", b, "--endpoint", endpoint_a.id),
        f"no endpoint with id '{endpoint_a.id}'",
    )


def _names(client: redis.Redis, needles: list[str]) -> list[str]:
    """Every key, member, field or value of the database that holds one of ``needles``."""
    found = []
    for key in client.scan_iter(count=1000):
        text = key.decode(errors="replace")
        kind = as_bytes(client.type(key)).decode()
        items: list[bytes] = []
        if kind == "zset":
            items = as_bytes_list(client.zrange(key, 0, -1))
        elif kind == "set":
            items = as_bytes_list(client.smembers(key))
        elif kind == "hash" and text.startswith("webhooks:"):
            items = as_bytes_list(part for pair in client.hgetall(key).items() for part in pair)
        elif kind == "list" and text.startswith("webhooks:"):
            items = as_bytes_list(client.lrange(key, 0, -1))
        for needle in needles:
            if needle in text or any(needle.encode() in item for item in items):
                found.append(f"{text} holds {needle}")
    return found


def test_deleting_a_tenant_forgets_everything_it_owned(tenant, receiver, wait_for, redis_client):
    other = f"acct_keep_{uuid.uuid4().hex[:6]}"
    get_tenants().add(other)
    try:
        kept, _ = get_endpoints().add(receiver.url("/ok/kept"), tenant=other)
        (kept_delivery,) = publish(event(), tenant=other)
        endpoint, _ = get_endpoints().add(
            receiver.url("/ok/gone"), tenant=tenant, headers={"Authorization": "Bearer gone-token"}
        )
        slow, _ = get_endpoints().add(receiver.url("/sleep-once/2"), tenant=tenant)
        done = publish(event(), tenant=tenant)
        for delivery_id in done:
            wait_for(delivery_id, lambda d: d.attempts or d.status is DeliveryStatus.DELIVERED)
        in_flight = publish(event(), tenant=tenant)
        deadline = time.monotonic() + 10
        while not any(
            "sleep-once" in r.path
            for r in receiver.received()
            if r.headers["webhook-id"] in in_flight
        ):
            assert time.monotonic() < deadline, "the attempt never started"
            time.sleep(0.02)

        gone = get_tenants().delete(tenant)
        assert (gone.endpoints, gone.deliveries) == (2, 4)
        time.sleep(3)  # the attempt in flight ends; what it records finds nothing
        needles = [tenant, endpoint.id, slow.id, *done, *in_flight, "gone-token"]
        assert _names(redis_client, needles) == []
        with pytest.raises(TenantNotFound):
            get_tenants().get(tenant)
        with pytest.raises(EndpointNotFound):
            get_endpoints().get(endpoint.id)
        # The other tenant is untouched.
        assert get_endpoints().get(kept.id, other).tenant_id == other
        assert wait_for(kept_delivery).status is DeliveryStatus.DELIVERED
    finally:
        get_tenants().delete(other)


def test_endpoint_headers_arrive_and_are_never_shown(tenant, receiver, wait_for):
    endpoint, _ = get_endpoints().add(
        receiver.url("/ok/headers"),
        tenant=tenant,
        headers={"Authorization": "Bearer customer-token", "X-Customer": "acme"},
    )
    (delivery_id,) = publish(event(), tenant=tenant)
    wait_for(delivery_id)
    (request,) = receiver.received("/ok/headers")
    assert request.headers["Authorization"] == "Bearer customer-token"
    assert request.headers["X-Customer"] == "acme"
    assert request.headers["webhook-id"] == delivery_id  # ours are still ours
    for text in (
        invoke("endpoints", "show", endpoint.id, "--json").stdout,
        invoke("endpoints", "list", "--tenant", tenant).stdout,
        json.dumps(endpoint.public()),
    ):
        assert "customer-token" not in text and "acme" not in text
    assert (
        "Authorization"
        in json.loads(invoke("endpoints", "show", endpoint.id, "--json").stdout)["headers"]
    )


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"Content-Type": "text/plain"}, "Content-Type"),
        ({"webhook-signature": "v1,forged"}, "webhook-signature"),
        ({"Host": "evil.example"}, "Host"),
        ({"Transfer-Encoding": "chunked"}, "Transfer-Encoding"),
        ({"X-Ok": "a\r\nInjected: 1"}, "X-Ok"),
        ({"Bad Name": "x"}, "Bad Name"),
        ({"X-Big": "x" * 5000}, "X-Big"),
        ({f"X-{n}": "v" for n in range(21)}, "headers"),
    ],
)
def test_a_forbidden_header_is_refused_naming_it(tenant, redis_client, headers, named):
    before = redis_client.zcard("webhooks:endpoints")
    with pytest.raises(InvalidInput) as caught:
        get_endpoints().add("https://example.com/hooks", tenant=tenant, headers=headers)
    assert named in caught.value.field
    assert redis_client.zcard("webhooks:endpoints") == before
    assert get_endpoints().all(tenant) == []


def test_the_cli_takes_headers(tenant):
    added = invoke(
        "endpoints",
        "add",
        "https://example.com/h",
        "--tenant",
        tenant,
        "--header",
        "Authorization: Bearer t0ken",
        "--header",
        "X-Two: 2",
        "--json",
    )
    assert added.returncode == 0, added.stderr
    assert sorted(json.loads(added.stdout)["headers"]) == ["Authorization", "X-Two"]
    assert_one_line_error(
        invoke(
            "endpoints",
            "add",
            "https://example.com/h",
            "--tenant",
            tenant,
            "--header",
            "User-Agent: me",
        ),
        "User-Agent",
    )
    assert_one_line_error(
        invoke(
            "endpoints", "add", "https://example.com/h", "--tenant", tenant, "--header", "no colon"
        ),
        "--header",
    )


def test_another_tenants_object_is_not_found_exactly_as_a_missing_one(tenant, receiver, wait_for):
    intruder = f"acct_intruder_{uuid.uuid4().hex[:6]}"
    get_tenants().add(intruder)
    try:
        endpoint, _ = get_endpoints().add(receiver.url("/ok/private"), tenant=tenant)
        (delivery_id,) = publish(event(), tenant=tenant)
        wait_for(delivery_id)
        missing_endpoint, missing_delivery = "ep_" + "0" * 24, str(uuid.uuid4())

        def same_error(act, real_id, fake_id) -> None:
            with pytest.raises(Exception) as real:
                act(real_id)
            with pytest.raises(Exception) as fake:
                act(fake_id)
            assert type(real.value) is type(fake.value)
            assert str(real.value).replace(real_id, "ID") == str(fake.value).replace(fake_id, "ID")

        same_error(lambda i: redeliver(i, tenant=intruder), delivery_id, missing_delivery)
        same_error(lambda i: get_store().get(i, intruder), delivery_id, missing_delivery)
        same_error(lambda i: recover(i, now(), tenant=intruder), endpoint.id, missing_endpoint)
        for act in (
            lambda i: get_endpoints().get(i, intruder),
            lambda i: get_endpoints().disable(i, "x", tenant=intruder),
            lambda i: get_endpoints().enable(i, intruder),
            lambda i: get_endpoints().delete(i, intruder),
        ):
            same_error(act, endpoint.id, missing_endpoint)
        with pytest.raises(DeliveryNotFound):
            redeliver(delivery_id, tenant=intruder)
        for command in (
            ["endpoints", "show"],
            ["endpoints", "disable"],
            ["endpoints", "rotate-secret"],
            ["endpoints", "delete"],
        ):
            real = invoke(*command, endpoint.id, "--tenant", intruder)
            fake = invoke(*command, missing_endpoint, "--tenant", intruder)
            assert real.stderr.replace(endpoint.id, "ID") == fake.stderr.replace(
                missing_endpoint, "ID"
            )
            assert real.returncode == fake.returncode == 1
        real = invoke("redeliver", delivery_id, "--tenant", intruder)
        fake = invoke("redeliver", missing_delivery, "--tenant", intruder)
        assert real.stderr.replace(delivery_id, "ID") == fake.stderr.replace(missing_delivery, "ID")
        # Nothing was done to the owner's objects.
        assert get_endpoints().get(endpoint.id, tenant).enabled
        assert len(get_store().get(delivery_id).attempts) == 1
    finally:
        get_tenants().delete(intruder)


def test_the_tenant_store(redis_client):
    prefix = f"acct_store_{uuid.uuid4().hex[:6]}"
    made = [get_tenants().add(f"{prefix}_{n}", f"Customer {n}") for n in range(5)]
    try:
        assert get_tenants().get(made[2].id) == made[2]
        with pytest.raises(TenantExists):
            get_tenants().add(made[0].id)
        page = get_tenants().list(limit=2, after=f"{prefix}_0")
        assert [t.id for t in page] == [f"{prefix}_1", f"{prefix}_2"]
        assert [t.id for t in get_tenants().list(limit=3, after=page[-1].id)] == [
            f"{prefix}_3",
            f"{prefix}_4",
            *[t.id for t in get_tenants().list(limit=1, after=f"{prefix}_4")],
        ][:3]
        for bad in ("", "-x", "a b", "x" * 129, "é", "a/b", "{x}"):
            with pytest.raises(InvalidInput) as caught:
                get_tenants().add(bad)
            assert caught.value.field == "id"
        with pytest.raises(TenantNotFound):
            get_tenants().get(f"{prefix}_missing")
        with pytest.raises(TenantNotFound):
            get_endpoints().add("https://example.com/", tenant=f"{prefix}_missing")
        # The CLI.
        shown = json.loads(invoke("tenants", "show", made[1].id, "--json").stdout)
        assert (shown["id"], shown["name"]) == (made[1].id, "Customer 1")
        listed = json.loads(
            invoke("tenants", "list", "--after", f"{prefix}_2", "--limit", "2", "--json").stdout
        )
        assert [t["id"] for t in listed] == [f"{prefix}_3", f"{prefix}_4"]
        assert_one_line_error(invoke("tenants", "add", made[0].id), "exists already")
        assert_one_line_error(invoke("tenants", "show", f"{prefix}_missing"), "no tenant")
    finally:
        for tenant in made:
            get_tenants().delete(tenant.id)
    with pytest.raises(TenantNotFound):
        get_tenants().delete(made[0].id)
