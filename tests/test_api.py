"""The HTTP API against a real ``webhooks serve`` process, a real Redis and a real worker:
every route's happy path, 401, another tenant's 404, 422 naming the field, 413, and
nothing written on any error."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from click.testing import CliRunner

from tests.conftest import as_bytes_list, event, keys, stored
from tests.web import Answer, InProcess, Web
from webhooks import portal_token
from webhooks.cli import main
from webhooks.dev.receiver import Receiver
from webhooks.dev.server import start_server, stop_server
from webhooks.errors import InvalidInput, TenantNotFound
from webhooks.models import Delivery, DeliveryStatus
from webhooks.system import get_endpoints, get_tenants


@pytest.fixture(params=["in-process", pytest.param("server", marks=pytest.mark.slow)])
def served(request: pytest.FixtureRequest) -> Web | InProcess:
    """The API in this process (the fast tier), and the same tests against a real
    ``webhooks serve`` process (the slow tier)."""
    return request.getfixturevalue("api" if request.param == "in-process" else "web")


def _error(response: Answer, status: int, field: str | None = None) -> dict[str, Any]:
    """The response's error, checked: its status, the JSON shape, and the field."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    if field is not None:
        assert error.get("field") == field, error
    return error


def _snapshot(client: redis.Redis, tenant_id: str) -> dict[str, Any]:
    """Everything Redis holds for a tenant, to show that a refused request wrote nothing."""
    found: dict[str, Any] = {}
    for key in sorted(client.scan_iter(match=f"{keys().tenant(tenant_id)}*")):
        found[key.decode()] = client.dump(key)
    endpoint_ids = sorted(
        m.decode() for m in as_bytes_list(client.smembers(keys().tenant_endpoints(tenant_id)))
    )
    for endpoint_id in endpoint_ids:
        found[endpoint_id] = client.get(keys().endpoint(endpoint_id))
    for delivery_id in as_bytes_list(client.zrange(keys().tenant_deliveries(tenant_id), 0, -1)):
        found[delivery_id.decode()] = (
            client.hgetall(keys().delivery(delivery_id.decode())),
            client.lrange(keys().attempts(delivery_id.decode()), 0, -1),
        )
    found["deliveries"] = client.zcard(keys().deliveries())
    return found


@pytest.fixture
def make_tenant(redis_client: redis.Redis) -> Iterator[Callable[[], str]]:
    """Tenants of the test's own, deleted afterwards."""
    made: list[str] = []

    def make() -> str:
        tenant_id = f"acct_{uuid.uuid4().hex[:10]}"
        get_tenants().add(tenant_id, f"Customer {tenant_id}")
        made.append(tenant_id)
        return tenant_id

    yield make
    for tenant_id in made:
        with contextlib.suppress(TenantNotFound):
            get_tenants().delete(tenant_id)


def _wait(
    web: Web,
    tenant_id: str,
    delivery_id: str,
    until: Callable[[dict[str, Any]], bool],
    timeout: float = 20,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = web.call("GET", f"/api/v1/tenants/{tenant_id}/deliveries/{delivery_id}").json()
        if until(found):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def test_health_openapi_and_headers(served: Web | InProcess) -> None:
    web = served
    health = web.call("GET", "/healthz", None)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert "script-src 'self'" in health.headers["content-security-policy"]
    assert "unsafe-inline" not in health.headers["content-security-policy"]
    document = web.call("GET", "/openapi.json", None).json()
    routes = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    expected = {
        ("POST", "/api/v1/tenants"),
        ("GET", "/api/v1/tenants"),
        ("GET", "/api/v1/tenants/{tenant_id}"),
        ("DELETE", "/api/v1/tenants/{tenant_id}"),
        ("GET", "/api/v1/tenants/{tenant_id}/endpoints"),
        ("POST", "/api/v1/tenants/{tenant_id}/endpoints"),
        ("GET", "/api/v1/tenants/{tenant_id}/endpoints/{endpoint_id}"),
        ("PATCH", "/api/v1/tenants/{tenant_id}/endpoints/{endpoint_id}"),
        ("DELETE", "/api/v1/tenants/{tenant_id}/endpoints/{endpoint_id}"),
        ("POST", "/api/v1/tenants/{tenant_id}/endpoints/{endpoint_id}/rotate-secret"),
        ("POST", "/api/v1/tenants/{tenant_id}/endpoints/{endpoint_id}/recover"),
        ("POST", "/api/v1/tenants/{tenant_id}/events"),
        ("GET", "/api/v1/tenants/{tenant_id}/deliveries"),
        ("GET", "/api/v1/tenants/{tenant_id}/deliveries/{delivery_id}"),
        ("POST", "/api/v1/tenants/{tenant_id}/deliveries/{delivery_id}/redeliver"),
        ("GET", "/api/v1/stats"),
        ("GET", "/api/v1/tenants/{tenant_id}/stats"),
        ("GET", "/healthz"),
    }
    assert expected <= routes, expected - routes
    # The event body is documented with the validator's rules.
    schemas = document["components"]["schemas"]
    publish = document["paths"]["/api/v1/tenants/{tenant_id}/events"]["post"]
    assert publish["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Event"
    }
    text = json.dumps(schemas)
    assert '"format": "date-time"' in text and '"then"' in text
    assert "#/$defs/" not in text  # every reference resolves inside the document
    # Every error is JSON, also for a route or method that does not exist.
    _error(web.call("GET", "/api/v1/nothing-here"), 404)
    _error(web.call("PUT", "/api/v1/stats"), 405)


@pytest.mark.slow
def test_health_without_redis(tmp_path: Path) -> None:
    process, base = start_server(
        tmp_path / "serve.log",
        {"WEBHOOKS_REDIS_URL": "redis://127.0.0.1:9/0", "WEBHOOKS_REDIS_TIMEOUT_SECONDS": "0.2"},
    )
    try:
        assert requests.get(base + "/healthz", timeout=20).status_code == 503
        down = Web(base, "operator-token-for-the-tests-only", tmp_path).call(
            "GET", "/api/v1/tenants"
        )
        _error(down, 503)
    finally:
        stop_server(process)


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"WEBHOOKS_API_TOKEN": ""}, "WEBHOOKS_API_TOKEN"),
        ({"WEBHOOKS_API_TOKEN": "short"}, "WEBHOOKS_API_TOKEN"),
        ({"WEBHOOKS_PORTAL_SECRET": ""}, "WEBHOOKS_PORTAL_SECRET"),
        ({"WEBHOOKS_PORTAL_SECRET": "x" * 31}, "WEBHOOKS_PORTAL_SECRET"),
    ],
)
def test_serve_refuses_without_its_tokens(
    env: dict[str, str], complaint: str, settings_env: Callable[..., None]
) -> None:
    settings_env(**{name.removeprefix("WEBHOOKS_").lower(): value for name, value in env.items()})
    result = CliRunner().invoke(main, ["serve", "--port", "1"])
    assert result.exit_code == 2 and complaint in result.output, result.output


def test_unauthorized(
    served: Web | InProcess, make_tenant: Callable[[], str], redis_client: redis.Redis
) -> None:
    web = served
    tenant_id = make_tenant()
    path = f"/api/v1/tenants/{tenant_id}/endpoints"
    body = {"url": "https://example.com/hook"}
    before = _snapshot(redis_client, tenant_id)
    forged = portal_token(tenant_id)[:-3] + "abc"
    expired = portal_token(tenant_id, ttl_seconds=0.001)
    time.sleep(0.01)
    for token, headers in [
        (None, {}),
        (None, {"Authorization": "Basic dXNlcjpwYXNz"}),
        (None, {"Authorization": "Bearer "}),
        ("wrong" * 6, {}),
        (forged, {}),
        (expired, {}),
        (web.operator_token + "x", {}),
    ]:
        for method in ("GET", "POST"):
            response = web.call(method, path, token, json=body, headers=headers)
            _error(response, 401)
            assert response.headers["www-authenticate"] == "Bearer"
    assert _snapshot(redis_client, tenant_id) == before
    # A token outlives neither its tenant nor a new tenant under the same id.
    token = portal_token(tenant_id)
    assert web.call("GET", path, token).status_code == 200
    get_tenants().delete(tenant_id)
    _error(web.call("GET", path, token), 401)
    get_tenants().add(tenant_id, "someone else")
    _error(web.call("GET", path, token), 401)
    assert web.call("GET", path, portal_token(tenant_id)).status_code == 200


def test_tenants(
    served: Web | InProcess, make_tenant: Callable[[], str], redis_client: redis.Redis
) -> None:
    web = served
    prefix = f"api_{uuid.uuid4().hex[:8]}"
    made = []
    try:
        for n in range(5):
            created = web.call(
                "POST", "/api/v1/tenants", json={"id": f"{prefix}_{n}", "name": f"Name {n}"}
            )
            assert created.status_code == 201, created.text
            assert created.json()["id"] == f"{prefix}_{n}"
            made.append(f"{prefix}_{n}")
        count = redis_client.zcard(keys().tenants())
        _error(web.call("POST", "/api/v1/tenants", json={"id": made[0]}), 409, "id")
        _error(web.call("POST", "/api/v1/tenants", json={"id": "bad id!"}), 422, "id")
        _error(
            web.call("POST", "/api/v1/tenants", json={"id": "ok_1", "name": "x" * 201}), 422, "name"
        )
        _error(web.call("POST", "/api/v1/tenants", json={"name": "no id"}), 422, "id")
        _error(web.call("POST", "/api/v1/tenants", json={"id": "ok_2", "extra": 1}), 422, "extra")
        _error(
            web.call(
                "POST",
                "/api/v1/tenants",
                data=b"{not json",
                headers={"Content-Type": "application/json"},
            ),
            422,
        )
        assert redis_client.zcard(keys().tenants()) == count
        # Paging by id, with after.
        seen: list[str] = []
        after: str | None = f"{prefix}"
        while after is not None:
            page = web.call("GET", f"/api/v1/tenants?limit=2&after={after}").json()
            seen += [t["id"] for t in page["data"] if t["id"].startswith(prefix)]
            after = (
                page["next_after"]
                if all(t["id"].startswith(prefix) for t in page["data"])
                else None
            )
        assert seen == made
        _error(web.call("GET", "/api/v1/tenants?limit=0"), 422, "limit")
        _error(web.call("GET", "/api/v1/tenants?limit=abc"), 422, "limit")
        one = web.call("GET", f"/api/v1/tenants/{made[1]}").json()
        assert one["name"] == "Name 1"
        _error(web.call("GET", "/api/v1/tenants/nobody_here"), 404)
        deleted = web.call("DELETE", f"/api/v1/tenants/{made[4]}")
        assert deleted.status_code == 200 and deleted.json()["deleted"] is True
        made.pop()
        _error(web.call("GET", f"/api/v1/tenants/{prefix}_4"), 404)
        _error(web.call("DELETE", f"/api/v1/tenants/{prefix}_4"), 404)
        # A tenant's token: not the operator's routes; another tenant is not found.
        own = portal_token(made[0])
        assert web.call("GET", f"/api/v1/tenants/{made[0]}", own).status_code == 200
        _error(web.call("GET", "/api/v1/tenants", own), 403)
        _error(web.call("POST", "/api/v1/tenants", own, json={"id": f"{prefix}_x"}), 403)
        _error(web.call("DELETE", f"/api/v1/tenants/{made[0]}", own), 403)
        _error(web.call("GET", f"/api/v1/tenants/{made[1]}", own), 404)
        _error(web.call("DELETE", f"/api/v1/tenants/{made[1]}", own), 404)
        _error(web.call("GET", "/api/v1/stats", own), 403)
        assert redis_client.zcard(keys().tenants()) == count - 1
    finally:
        for tenant_id in made:
            get_tenants().delete(tenant_id)


def test_endpoints(
    served: Web | InProcess,
    make_tenant: Callable[[], str],
    receiver: Receiver,
    redis_client: redis.Redis,
) -> None:
    web = served
    tenant_id = make_tenant()
    base = f"/api/v1/tenants/{tenant_id}/endpoints"
    token = portal_token(tenant_id)  # the customer does all of this through the portal
    created = web.call(
        "POST",
        base,
        token,
        json={
            "url": receiver.url("/ok/api"),
            "event_types": ["screenshot_set.approved"],
            "description": "<b>ours</b>",
            "headers": {"X-Receiver-Key": "k-123"},
        },
    )
    assert created.status_code == 201, created.text
    endpoint = created.json()
    secret = endpoint["secret"]
    assert secret.startswith("whsec_")
    path = f"{base}/{endpoint['id']}"
    shown = web.call("GET", path, token).json()
    assert "secret" not in shown and secret not in json.dumps(shown)
    assert "k-123" not in json.dumps(shown) and "X-Receiver-Key" in shown["headers"]
    listed = web.call("GET", base, token).json()["data"]
    assert [e["id"] for e in listed] == [endpoint["id"]]

    before = _snapshot(redis_client, tenant_id)
    for body, field in [
        ({"url": "ftp://example.com/"}, "url"),
        ({"url": "https://example.com/", "event_types": ["no.such"]}, "event_types"),
        ({"url": "https://example.com/", "description": "x" * 1001}, "description"),
        ({"url": "https://example.com/", "headers": {"Host": "evil"}}, "headers.Host"),
        ({"url": 5}, "url"),
        ({}, "url"),
        ({"url": "https://example.com/", "secret": "mine"}, "secret"),
    ]:
        _error(web.call("POST", base, token, json=body), 422, field)
    for body, field in [
        ({"url": "http://10.0.0.1/"}, "url"),
        ({"enabled": "maybe"}, "enabled"),
        ({"description": "new", "enabled": None}, "enabled"),
        ({"url": "https://ok.example.com/", "description": "y" * 1001}, "description"),
        ({"url": None}, "url"),
        ({"secrets": []}, "secrets"),
    ]:
        _error(web.call("PATCH", path, token, json=body), 422, field)
    _error(
        web.call(
            "POST",
            f"{path}/recover",
            token,
            json={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        ),
        422,
        "until",
    )
    _error(web.call("POST", f"{path}/recover", token, json={"since": "yesterday"}), 422, "since")
    _error(
        web.call("POST", f"{path}/recover", token, json={"since": "2026-01-01T00:00:00"}),
        422,
        "since",
    )
    # Header values HTTP cannot send are refused at the door, and never repeated.
    for marker, value in [
        ("s3kr1t-lead", " s3kr1t-lead"),
        ("s3kr1t-trail", "s3kr1t-trail "),
        ("s3kr1t-tab", "s3kr1t-tab\tx"),
        ("s3kr1t-cjk", "s3kr1t-cjk 日本"),
        ("s3kr1t-ls", "s3kr1t-ls\u2028x"),
        ("s3kr1t-del", "s3kr1t-del\x7f"),
        ("s3kr1t-c1", "s3kr1t-c1\x85"),
        ("s3kr1t-nbsp", "\xa0s3kr1t-nbsp"),
        ("s3kr1t-crlf", "s3kr1t-crlf\r\nX-Injected: 1"),
    ]:
        headers = {"X-Receiver-Key": value}
        for method, where, body in [
            ("POST", base, {"url": "https://example.com/", "headers": headers}),
            ("PATCH", path, {"headers": headers}),
        ]:
            refused = web.call(method, where, token, json=body)
            _error(refused, 422, "headers.X-Receiver-Key")
            assert marker not in refused.text, (marker, refused.text)
    _error(web.call("GET", f"{base}/ep_missing", token), 404)
    assert _snapshot(redis_client, tenant_id) == before

    changed = web.call(
        "PATCH",
        path,
        token,
        json={
            "url": receiver.url("/ok/api2"),
            "description": "changed",
            "event_types": None,
            "headers": {"X-Other": "v"},
        },
    ).json()
    assert changed["url"] == receiver.url("/ok/api2") and changed["description"] == "changed"
    assert changed["event_types"] is None and list(changed["headers"]) == ["X-Other"]
    disabled = web.call("PATCH", path, token, json={"enabled": False}).json()
    assert disabled["enabled"] is False
    assert disabled["disabled_reason"] == "disabled by the customer"
    assert web.call("PATCH", path, token, json={"enabled": True}).json()["enabled"] is True

    rotated = web.call("POST", f"{path}/rotate-secret", token)
    assert rotated.status_code == 200 and rotated.json()["secret"] not in (secret, None)
    recovered = web.call("POST", f"{path}/recover", token, json={"since": "2026-01-01T00:00:00Z"})
    assert recovered.status_code == 202 and recovered.json()["delivery_ids"] == []

    assert web.call("DELETE", path, token).json() == {
        "endpoint_id": endpoint["id"],
        "deleted": True,
    }
    _error(web.call("GET", path, token), 404)
    _error(web.call("DELETE", path, token), 404)


@pytest.mark.slow
@pytest.mark.usefixtures("worker")
def test_publish_list_show_redeliver(
    web: Web, make_tenant: Callable[[], str], receiver: Receiver, redis_client: redis.Redis
) -> None:
    tenant_id = make_tenant()
    base = f"/api/v1/tenants/{tenant_id}"
    first = web.call("POST", f"{base}/endpoints", json={"url": receiver.url("/fail/1/api")}).json()
    second = web.call("POST", f"{base}/endpoints", json={"url": receiver.url("/ok/api3")}).json()

    before = _snapshot(redis_client, tenant_id)
    bad = event()
    bad["data"]["screenshot_set"]["screenshots"][0]["status"] = "blurry"
    _error(
        web.call("POST", f"{base}/events", json=bad),
        422,
        "data.screenshot_set.screenshots.0.status",
    )
    _error(web.call("POST", f"{base}/events", data=b"[1, 2"), 422)
    _error(web.call("POST", f"{base}/events", json=event(id="x" * 300)), 422, "id")
    too_big = json.dumps(event(padding="x" * 300_000)).encode()
    _error(
        web.call(
            "POST", f"{base}/events", data=too_big, headers={"Content-Type": "application/json"}
        ),
        413,
    )

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 10_000

    _error(
        web.call(
            "POST",
            f"{base}/endpoints",
            data=chunks(),
            headers={"Content-Type": "application/json"},
        ),
        413,
    )
    _error(web.call("POST", f"{base}/events", token=portal_token(tenant_id), json=event()), 403)
    assert _snapshot(redis_client, tenant_id) == before

    ids = []
    for _ in range(3):
        published = web.call("POST", f"{base}/events", json=event())
        assert published.status_code == 202, published.text
        ids += published.json()["delivery_ids"]
    assert len(ids) == 6
    again = web.call("POST", f"{base}/events", json=event(id="evt_same"))
    assert web.call("POST", f"{base}/events", json=event(id="evt_same")).json() == again.json()
    ids += again.json()["delivery_ids"]
    done = {i: _wait(web, tenant_id, i, lambda d: d["status"] == "delivered") for i in ids}

    # Detail: the same JSON as `webhooks show --json`.
    shown = CliRunner().invoke(main, ["show", ids[0], "--tenant", tenant_id, "--json"])
    assert shown.exit_code == 0, shown.output
    assert done[ids[0]] == json.loads(shown.output)
    assert Delivery.model_validate(done[ids[0]]).status is DeliveryStatus.DELIVERED

    # The list: newest first, summaries, paged without repeats.
    everything = web.call("GET", f"{base}/deliveries?limit=200").json()
    assert everything["next_cursor"] is None and len(everything["data"]) == 8
    created = [d["created_at"] for d in everything["data"]]
    assert created == sorted(created, reverse=True)
    item = everything["data"][0]
    assert "attempts" not in item and item["attempt_count"] >= 1
    assert item["last_attempt"]["status_code"] == 200
    paged, cursor = [], None
    while True:
        query = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = web.call("GET", f"{base}/deliveries?{query}").json()
        paged += [d["id"] for d in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == [d["id"] for d in everything["data"]]
    by_endpoint = web.call(
        "GET", f"{base}/deliveries?endpoint_id={first['id']}&status=delivered"
    ).json()["data"]
    assert {d["endpoint_id"] for d in by_endpoint} == {first["id"]} and len(by_endpoint) == 4
    assert all(d["attempt_count"] == 2 for d in by_endpoint)  # 500, then 200
    assert web.call("GET", f"{base}/deliveries?status=retrying").json()["data"] == []
    _error(web.call("GET", f"{base}/deliveries?status=lost"), 422, "status")
    _error(web.call("GET", f"{base}/deliveries?cursor=%%%"), 422, "cursor")
    _error(web.call("GET", f"{base}/deliveries?cursor=bm90IGEgY3Vyc29y"), 422, "cursor")
    _error(web.call("GET", f"{base}/deliveries?limit=201"), 422, "limit")
    _error(web.call("GET", f"{base}/deliveries?endpoint_id=ep_nope"), 404)
    _error(web.call("GET", f"{base}/deliveries/nope"), 404)

    # Redeliver: a new attempt, numbered on.
    target = ids[1]
    count = len(done[target]["attempts"])
    redelivered = web.call(
        "POST", f"{base}/deliveries/{target}/redeliver", token=portal_token(tenant_id)
    )
    assert redelivered.status_code == 202
    after = _wait(
        web,
        tenant_id,
        target,
        lambda d: len(d["attempts"]) == count + 1 and d["status"] == "delivered",
    )
    assert after["attempts"][-1]["number"] == count + 1
    _error(web.call("POST", f"{base}/deliveries/nope/redeliver"), 404)
    web.call("PATCH", f"{base}/endpoints/{second['id']}", json={"enabled": False})
    second_delivery = next(d["id"] for d in everything["data"] if d["endpoint_id"] == second["id"])
    _error(web.call("POST", f"{base}/deliveries/{second_delivery}/redeliver"), 409)

    stats = web.call("GET", f"{base}/stats").json()
    assert stats["delivered"] == 8 and stats["overdue"] == 0
    totals = web.call("GET", "/api/v1/stats").json()
    assert totals["delivered"] >= 8 and "parked" in totals


def test_deliveries_by_event_id(
    served: Web | InProcess, make_tenant: Callable[[], str], receiver: Receiver
) -> None:
    """``?event_id=``: the deliveries of that event, one per endpoint, in one page, and
    only the asking tenant's, whoever else published an event with the same id."""
    web = served
    a, b = make_tenant(), make_tenant()
    endpoints = [
        get_endpoints().add(receiver.url(f"/ok/by-event-{n}"), tenant=a)[0] for n in range(3)
    ]
    b_endpoint = get_endpoints().add(receiver.url("/ok/by-event-b"), tenant=b)[0]
    # Characters a query string must carry encoded (an id may hold anything but spaces).
    wanted = event(id=f"evt_{uuid.uuid4().hex[:8]}&status=retrying#x+y%2F/?é")
    made = stored(wanted, [(e.url, e.id) for e in endpoints], tenant=a)
    stored(event(), [(e.url, e.id) for e in endpoints], tenant=a)  # another event of A's
    theirs = stored(wanted, [(b_endpoint.url, b_endpoint.id)], tenant=b)  # the same id, B's
    only_b = event()
    stored(only_b, [(b_endpoint.url, b_endpoint.id)], tenant=b)

    def by_event(tenant_id: str, event_id: str, token: str = "operator", more: str = "") -> Any:
        quoted = urllib.parse.quote(event_id, safe="")
        found = web.call(
            "GET", f"/api/v1/tenants/{tenant_id}/deliveries?event_id={quoted}{more}", token
        )
        assert found.status_code == 200, found.text
        body = found.json()
        assert set(body) == {"data", "next_cursor"} and body["next_cursor"] is None, body
        return body["data"]

    for token in ("operator", portal_token(a)):
        data = by_event(a, wanted["id"], token)
        assert sorted(d["id"] for d in data) == sorted(d.id for d in made)
        assert sorted(d["endpoint_id"] for d in data) == sorted(e.id for e in endpoints)
        assert {(d["event_id"], d["tenant_id"]) for d in data} == {(wanted["id"], a)}
        assert all("attempts" not in d and "attempt_count" in d for d in data)
    # The other filters still apply.
    one = by_event(a, wanted["id"], more=f"&endpoint_id={endpoints[1].id}")
    assert [d["id"] for d in one] == [d.id for d in made if d.endpoint_id == endpoints[1].id]
    assert by_event(a, wanted["id"], more="&status=retries_exhausted") == []  # all go to /ok/
    _error(
        web.call("GET", f"/api/v1/tenants/{a}/deliveries?event_id=x&endpoint_id={b_endpoint.id}"),
        404,
    )
    # B's: its own delivery of the shared id; B's own event is nobody else's.
    assert [d["id"] for d in by_event(b, wanted["id"], portal_token(b))] == [theirs[0].id]
    assert by_event(a, only_b["id"]) == []
    assert by_event(a, only_b["id"], portal_token(a)) == []
    # Unknown: an empty page. The bounds: 1 to 255 characters.
    assert by_event(a, f"evt_never_{uuid.uuid4().hex}") == []
    assert by_event(a, "e" * 255) == []
    assert by_event(a, "\N{GRINNING FACE}" * 255) == []  # characters, not UTF-16 units or bytes
    _error(web.call("GET", f"/api/v1/tenants/{a}/deliveries?event_id={'e' * 256}"), 422, "event_id")
    _error(web.call("GET", f"/api/v1/tenants/{a}/deliveries?event_id="), 422, "event_id")
    # Another tenant's URL with A's token: not found, as for every listing.
    _error(
        web.call("GET", f"/api/v1/tenants/{b}/deliveries?event_id={only_b['id']}", portal_token(a)),
        404,
    )


@pytest.mark.slow
@pytest.mark.usefixtures("worker")
def test_another_tenants_objects_are_not_found(
    web: Web, make_tenant: Callable[[], str], receiver: Receiver, redis_client: redis.Redis
) -> None:
    a, b = make_tenant(), make_tenant()
    endpoint_b = web.call(
        "POST", f"/api/v1/tenants/{b}/endpoints", json={"url": receiver.url("/ok/b")}
    ).json()["id"]
    delivery_b = web.call("POST", f"/api/v1/tenants/{b}/events", json=event()).json()[
        "delivery_ids"
    ][0]
    endpoint_a = web.call(
        "POST", f"/api/v1/tenants/{a}/endpoints", json={"url": receiver.url("/ok/a")}
    ).json()["id"]
    token_a = portal_token(a)
    # Once delivered, nothing of B's changes unless one of the refused calls wrote.
    _wait(web, b, delivery_b, lambda d: d["status"] == "delivered")
    before_b = _snapshot(redis_client, b)
    before_a = _snapshot(redis_client, a)
    since = {"since": "2026-01-01T00:00:00Z"}
    # Tenant A's token on every one of tenant B's URLs...
    b_urls = [
        ("GET", f"/api/v1/tenants/{b}", None),
        ("DELETE", f"/api/v1/tenants/{b}", None),
        ("GET", f"/api/v1/tenants/{b}/endpoints", None),
        ("POST", f"/api/v1/tenants/{b}/endpoints", {"url": "https://example.com/"}),
        ("GET", f"/api/v1/tenants/{b}/endpoints/{endpoint_b}", None),
        ("PATCH", f"/api/v1/tenants/{b}/endpoints/{endpoint_b}", {"enabled": False}),
        ("DELETE", f"/api/v1/tenants/{b}/endpoints/{endpoint_b}", None),
        ("POST", f"/api/v1/tenants/{b}/endpoints/{endpoint_b}/rotate-secret", None),
        ("POST", f"/api/v1/tenants/{b}/endpoints/{endpoint_b}/recover", since),
        ("POST", f"/api/v1/tenants/{b}/events", event()),
        ("GET", f"/api/v1/tenants/{b}/deliveries", None),
        ("GET", f"/api/v1/tenants/{b}/deliveries/{delivery_b}", None),
        ("POST", f"/api/v1/tenants/{b}/deliveries/{delivery_b}/redeliver", None),
        ("GET", f"/api/v1/tenants/{b}/stats", None),
    ]
    # ...and B's objects under A's own URLs.
    own_urls = [
        ("GET", f"/api/v1/tenants/{a}/endpoints/{endpoint_b}", None),
        ("PATCH", f"/api/v1/tenants/{a}/endpoints/{endpoint_b}", {"enabled": False}),
        ("DELETE", f"/api/v1/tenants/{a}/endpoints/{endpoint_b}", None),
        ("POST", f"/api/v1/tenants/{a}/endpoints/{endpoint_b}/rotate-secret", None),
        ("POST", f"/api/v1/tenants/{a}/endpoints/{endpoint_b}/recover", since),
        ("GET", f"/api/v1/tenants/{a}/deliveries?endpoint_id={endpoint_b}", None),
        ("GET", f"/api/v1/tenants/{a}/deliveries/{delivery_b}", None),
        ("POST", f"/api/v1/tenants/{a}/deliveries/{delivery_b}/redeliver", None),
    ]
    missing = f"/api/v1/tenants/acct_{uuid.uuid4().hex[:10]}/endpoints"
    answers = {}
    for method, path, body in [*b_urls, *own_urls]:
        response = web.call(method, path, token_a, json=body)
        answers[(method, path)] = _error(response, 404)["message"]
    # Exactly what a tenant that does not exist gets: nothing tells B exists.
    assert answers[("GET", f"/api/v1/tenants/{b}/endpoints")] == _error(
        web.call("GET", missing, token_a), 404
    )["message"].replace(missing.split("/")[4], b)
    assert (
        web.call("GET", f"/api/v1/tenants/{a}/endpoints/{endpoint_a}", token_a).status_code == 200
    )
    before_b = {k: v for k, v in before_b.items() if k != "deliveries"}
    after_b = {k: v for k, v in _snapshot(redis_client, b).items() if k != "deliveries"}
    assert after_b == before_b
    assert {k: v for k, v in _snapshot(redis_client, a).items() if k != "deliveries"} == {
        k: v for k, v in before_a.items() if k != "deliveries"
    }


def test_sessions_and_csrf(
    served: Web | InProcess, make_tenant: Callable[[], str], redis_client: redis.Redis
) -> None:
    web = served
    tenant_id = make_tenant()
    browser = web.browser()
    _error(web.call("POST", "/api/v1/session", None, json={"token": "nope"}, session=browser), 401)
    refused = web.call(
        "POST",
        "/api/v1/session",
        None,
        json={"token": portal_token(tenant_id)},
        session=browser,
        headers={"Origin": "https://evil.example"},
    )
    _error(refused, 403)
    assert "set-cookie" not in refused.headers
    _error(web.call("GET", "/api/v1/session", None, session=browser), 401)
    signed_in = web.call(
        "POST",
        "/api/v1/session",
        None,
        json={"token": portal_token(tenant_id, ttl_seconds=600)},
        session=browser,
    )
    assert signed_in.status_code == 201
    cookie = signed_in.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    session = signed_in.json()
    assert session["role"] == "tenant" and session["tenant_id"] == tenant_id
    csrf = session["csrf_token"]
    assert web.call("GET", "/api/v1/session", None, session=browser).json() == session
    path = f"/api/v1/tenants/{tenant_id}/endpoints"
    body = {"url": "https://example.com/hook"}
    before = _snapshot(redis_client, tenant_id)
    _error(web.call("POST", path, None, json=body, session=browser), 403)
    _error(
        web.call("POST", path, None, json=body, session=browser, headers={"X-CSRF-Token": "guess"}),
        403,
    )
    _error(
        web.call(
            "POST",
            path,
            None,
            json=body,
            session=browser,
            headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
        ),
        403,
    )
    assert _snapshot(redis_client, tenant_id) == before
    origin = web.base
    made = web.call(
        "POST",
        path,
        None,
        json=body,
        session=browser,
        headers={"X-CSRF-Token": csrf, "Origin": origin},
    )
    assert made.status_code == 201
    assert web.call("GET", path, None, session=browser).status_code == 200
    _error(
        web.call("GET", f"/api/v1/tenants/{make_tenant()}/endpoints", None, session=browser), 404
    )
    # Operator sessions reach everything; signing out ends a session.
    operator = web.browser()
    web.call("POST", "/api/v1/session", None, json={"token": web.operator_token}, session=operator)
    assert web.call("GET", "/api/v1/stats", None, session=operator).status_code == 200
    assert (
        web.call(
            "DELETE", "/api/v1/session", None, session=browser, headers={"X-CSRF-Token": csrf}
        ).status_code
        == 204
    )
    _error(web.call("GET", path, None, session=browser), 401)
    # Deleting a tenant ends its sessions.
    other = web.browser()
    web.call(
        "POST", "/api/v1/session", None, json={"token": portal_token(tenant_id)}, session=other
    )
    assert web.call("GET", path, None, session=other).status_code == 200
    get_tenants().delete(tenant_id)
    _error(web.call("GET", path, None, session=other), 401)


def test_portal_link_command(make_tenant: Callable[[], str], served: Web | InProcess) -> None:
    web = served
    tenant_id = make_tenant()
    result = CliRunner().invoke(
        main, ["portal-link", tenant_id, "--ttl", "60", "--base-url", web.base + "/"]
    )
    assert result.exit_code == 0, result.output
    link = result.output.strip()
    assert link.startswith(f"{web.base}/portal#token=")
    token = link.split("#token=", 1)[1]
    assert web.call("GET", f"/api/v1/tenants/{tenant_id}/stats", token).status_code == 200
    for args, complaint in [
        (["nobody_at_all"], "no tenant"),
        ([tenant_id, "--ttl", "0"], "--ttl"),
        ([tenant_id, "--base-url", "ftp://x"], "--base-url"),
    ]:
        refused = CliRunner().invoke(main, ["portal-link", *args])
        assert refused.exit_code != 0 and complaint in refused.output, refused.output
    if isinstance(web, Web):  # a server's access log: tokens are never logged
        assert token not in web.log.read_text()
    for ttl in (0, -1, 91 * 86400, True):
        with pytest.raises(InvalidInput) as refused_ttl:
            portal_token(tenant_id, ttl_seconds=ttl)
        assert refused_ttl.value.field == "ttl_seconds"
    with pytest.raises(TenantNotFound):
        portal_token("nobody_at_all")
