"""End to end: producer → Redis → real worker process → real receiver on 127.0.0.1."""

from __future__ import annotations

import itertools
import json
import socket
import time

import pytest

from tests.conftest import QUEUE, event
from webhooks import __version__
from webhooks.models import DeliveryStatus, Run
from webhooks.producer import Producer
from webhooks.system import get_default, get_store
from webhooks.worker.task import deliver

pytestmark = pytest.mark.usefixtures("worker")

BASE = 0.0005  # the worker's WEBHOOKS_RETRY_BASE_SECONDS


def test_delivered_on_first_try(receiver, wait_for):
    result = deliver.delay(receiver.url("/ok"), event(id="evt_first"))
    delivery = wait_for(result.id)

    assert delivery.status is DeliveryStatus.DELIVERED
    assert delivery.next_attempt_at is None
    assert [(a.number, a.status_code, a.error) for a in delivery.attempts] == [(1, 200, None)]
    assert delivery.attempts[0].response_body == '{"ok": true}'
    (request,) = receiver.received("/ok", result.id)
    _, body = get_store().load(result.id)
    assert request.body == body  # the exact bytes recorded are the bytes sent
    assert json.loads(body)["id"] == "evt_first"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"webhooks/{__version__}"
    assert request.headers["webhook-id"] == result.id
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 10


def test_delivered_after_k_failures_with_k_plus_one_attempts(receiver, wait_for):
    k = 3
    result = deliver.delay(receiver.url(f"/fail/{k}"), event())
    delivery = wait_for(result.id)

    assert delivery.status is DeliveryStatus.DELIVERED
    assert [a.number for a in delivery.attempts] == [1, 2, 3, 4]
    assert [a.status_code for a in delivery.attempts] == [500, 500, 500, 200]
    assert [a.error.kind if a.error else None for a in delivery.attempts] == [
        "http_status",
        "http_status",
        "http_status",
        None,
    ]
    requests = receiver.received(f"/fail/{k}", result.id)
    assert len(requests) == k + 1
    # One webhook-id for the whole delivery; a fresh timestamp each attempt.
    assert {r.headers["webhook-id"] for r in requests} == {result.id}
    stamps = [int(r.headers["webhook-timestamp"]) for r in requests]
    assert stamps == sorted(stamps)
    assert len({r.body for r in requests}) == 1


def test_retries_exhausted_after_exactly_15_attempts_with_exponential_gaps(receiver, wait_for):
    result = deliver.delay(receiver.url("/status/503"), event())
    delivery = wait_for(result.id, timeout=60)

    assert delivery.status is DeliveryStatus.RETRIES_EXHAUSTED
    assert delivery.next_attempt_at is None
    assert [a.number for a in delivery.attempts] == list(range(1, 16))
    assert all(
        a.status_code == 503 and a.error and a.error.kind == "http_status"
        for a in delivery.attempts
    )
    starts = [a.started_at.timestamp() for a in delivery.attempts]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    for n, gap in enumerate(gaps):
        expected = BASE * 2**n
        # Never early; late only by the attempt itself and the worker's overhead.
        assert expected - 0.005 <= gap <= expected + 0.5, (n, gap, expected)
    # The last waits dominate, so their ratio shows the doubling plainly.
    assert 1.8 < gaps[-1] / gaps[-2] < 2.2
    time.sleep(1)  # and nothing comes after the 15th
    assert len(receiver.received("/status/503", result.id)) == 15
    assert len(get_store().get(result.id).attempts) == 15


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# glibc refuses a name over 253 characters before any packet leaves, so this
# is a real resolver failure that sends no DNS query off the machine.
UNRESOLVABLE = ".".join(["a" * 63] * 4) + ".test"


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        pytest.param(
            lambda r: f"http://127.0.0.1:{_closed_port()}/", "connect_refused", id="refused"
        ),
        pytest.param(lambda r: f"http://{UNRESOLVABLE}/", "dns", id="dns"),
        pytest.param(lambda r: r.url("/ok").replace("http://", "https://"), "tls", id="tls"),
        pytest.param(lambda r: r.url("/sleep-once/3"), "timeout", id="read-timeout"),
        pytest.param(lambda r: r.url("/reset-once"), "connection_reset", id="reset"),
        pytest.param(lambda r: r.url("/status/404"), "http_status", id="404"),
        pytest.param(lambda r: r.url("/status/502"), "http_status", id="502"),
    ],
)
def test_each_failure_kind_is_a_failed_attempt(receiver, wait_for, url, kind):
    result = deliver.delay(url(receiver), event())
    delivery = wait_for(result.id, lambda d: len(d.attempts) >= 2)

    first = delivery.attempts[0]
    assert first.error is not None, first
    assert first.error.kind == kind, first.error
    assert first.error.message
    assert delivery.status is not DeliveryStatus.PENDING
    if kind == "timeout":
        assert first.status_code is None
        assert first.duration_ms < 2500  # the 1 s deadline, plus slack


def test_connect_timeout(receiver, wait_for):
    # A listener whose accept queue is full drops new SYNs, so connect() hangs
    # until the connect timeout: the same thing a firewalled host does, on loopback.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.2)
        result = deliver.delay(f"http://127.0.0.1:{port}/", event())
        delivery = wait_for(result.id, lambda d: len(d.attempts) >= 1)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    first = delivery.attempts[0]
    assert first.error is not None and first.error.kind == "timeout", first
    assert "connect" in first.error.message.lower()


def test_redirect_is_a_failed_attempt_and_never_followed(receiver, wait_for):
    result = deliver.delay(receiver.url("/redirect"), event())
    delivery = wait_for(result.id, lambda d: len(d.attempts) >= 3)

    assert [a.status_code for a in delivery.attempts[:3]] == [302, 302, 302]
    assert delivery.attempts[0].error.kind == "http_status"
    assert receiver.received("/redirect-target") == []


def test_huge_response_keeps_only_the_first_4_kb(receiver, wait_for):
    result = deliver.delay(receiver.url("/huge"), event())
    delivery = wait_for(result.id)

    assert delivery.status is DeliveryStatus.DELIVERED
    assert delivery.attempts[0].response_body == "x" * 4096


def test_slow_body_after_2xx_is_delivered_within_the_deadline(receiver, wait_for):
    result = deliver.delay(receiver.url("/drip"), event())
    delivery = wait_for(result.id)

    assert delivery.status is DeliveryStatus.DELIVERED
    attempt = delivery.attempts[0]
    assert attempt.status_code == 200
    assert attempt.duration_ms < 2500  # 1 s deadline: the drip would take 60 s
    assert 0 < len(attempt.response_body) < 300


def test_redelivered_message_of_a_finished_delivery_sends_nothing(receiver, wait_for):
    result = deliver.delay(receiver.url("/ok"), event())
    wait_for(result.id)
    # The same message again, as Redis would hand it out after a visibility timeout.
    Producer(get_default()).enqueue([Run(result.id, 0, 1)])
    time.sleep(1)
    assert len(receiver.received("/ok", result.id)) == 1
    assert len(get_store().get(result.id).attempts) == 1


def test_message_of_a_replaced_cycle_is_dropped(receiver, wait_for, worker_log):
    from webhooks import redeliver

    result = deliver.delay(receiver.url("/ok"), event())
    wait_for(result.id)
    redeliver(result.id)
    wait_for(result.id, lambda d: len(d.attempts) == 2)
    Producer(get_default()).enqueue(
        [Run(result.id, 0)]
    )  # a straggler of cycle 0, as a crashed worker might leave
    time.sleep(1)
    assert len(receiver.received("/ok", result.id)) == 2
    assert f"delivery {result.id}: dropping attempt" in worker_log.read_text()


def test_deliver_many_is_the_bulk_form(receiver, wait_for):
    from webhooks import deliver_many

    ids = deliver_many(
        [(receiver.url("/ok"), event(id=f"evt_bulk_{n}")) for n in range(30)]
        + [(receiver.url("/fail/1"), event(id="evt_bulk_retry"))]
    )
    assert len(set(ids)) == 31
    deliveries = [wait_for(delivery_id) for delivery_id in ids]
    assert all(d.status is DeliveryStatus.DELIVERED for d in deliveries)
    assert sorted(json.loads(get_store().load(d.id)[1])["id"] for d in deliveries[:30]) == sorted(
        f"evt_bulk_{n}" for n in range(30)
    )
    assert len(deliveries[-1].attempts) == 2


def test_deliver_many_refuses_the_whole_batch_naming_the_item(counts):
    from webhooks import InvalidInput, deliver_many

    before = counts()
    with pytest.raises(InvalidInput) as caught:
        deliver_many(
            [
                ("https://example.com/", event()),
                ("ftp://x/", event()),
                ("https://example.com/", event()),
            ]
        )
    assert caught.value.field == "[1].url"
    with pytest.raises(InvalidInput) as caught:
        deliver_many([("https://example.com/", event()), ("https://example.com/", event(id=""))])
    assert caught.value.field == "[1].id"
    assert counts()[1] == before[1]


def test_creating_is_idempotent_by_event_id_and_destination(receiver, wait_for):
    from webhooks import deliver_many

    raw = event()
    first = deliver.delay(receiver.url("/ok/idempotent"), raw).id
    # A producer retrying after an error it could not read: the same delivery.
    assert deliver.delay(receiver.url("/ok/idempotent"), raw).id == first
    assert deliver_many([(receiver.url("/ok/idempotent"), raw)] * 2) == [first, first]
    wait_for(first)
    # Another destination, or another event, is another delivery.
    other_url = deliver.delay(receiver.url("/ok/idempotent-2"), raw).id
    other_event = deliver.delay(receiver.url("/ok/idempotent"), event()).id
    assert len({first, other_url, other_event}) == 3
    wait_for(other_event)
    assert len(receiver.received("/ok/idempotent", first)) == 1
    assert len(get_store().get(first).attempts) == 1


def test_an_event_id_reused_for_another_body_is_refused(counts):
    from webhooks import DeliveryConflict, InvalidInput, deliver_many

    raw = event()
    deliver.apply_async(("https://example.com/conflict", raw), queue=QUEUE)
    before = counts()
    changed = {**raw, "created_at": "2026-11-27T10:00:00Z"}
    with pytest.raises(DeliveryConflict) as caught:
        deliver.apply_async(("https://example.com/conflict", changed), queue=QUEUE)
    assert caught.value.field == "id" and "another body" in str(caught.value)
    with pytest.raises(InvalidInput) as refused:
        deliver_many(
            [
                ("https://example.com/conflict-new", event()),
                ("https://example.com/conflict", changed),
            ]
        )
    assert refused.value.field == "[1].id"
    assert counts() == before  # nothing of either call was written
