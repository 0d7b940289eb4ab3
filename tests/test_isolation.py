"""Per-destination isolation: a concurrency limit and a circuit breaker, across workers."""

from __future__ import annotations

import time

import pytest

from tests.conftest import WORKER_ENV, event, stored
from webhooks.dev.receiver import Receiver
from webhooks.dev.worker import start_worker, stop_worker
from webhooks.models import DeliveryStatus, Run
from webhooks.producer import enqueue
from webhooks.storage import keys
from webhooks.storage.deliveries import get_store
from webhooks.worker.task import deliver


@pytest.fixture(scope="module")
def isolation_worker(redis_client, tmp_path_factory):
    env = {
        **WORKER_ENV,
        "WEBHOOKS_DESTINATION_CONCURRENCY": "2",
        "WEBHOOKS_BREAKER_FAILURES": "3",
        "WEBHOOKS_BREAKER_COOLDOWN_SECONDS": "1",
    }
    worker = start_worker(
        tmp_path_factory.mktemp("isolation") / "worker.log",
        env,
        "-Q",
        "isolation",
        "--concurrency=6",
        "-n",
        "isolation@%h",
    )
    yield
    stop_worker(worker)


@pytest.fixture
def own_receiver():
    with Receiver() as receiver:  # its own port: a destination of its own
        yield receiver


@pytest.mark.usefixtures("isolation_worker")
def test_at_most_the_limit_in_flight_to_one_destination(own_receiver, wait_for):
    ids = [
        deliver.apply_async((own_receiver.url("/sleep/0.5"), event()), queue="isolation").id
        for _ in range(6)
    ]
    deliveries = [wait_for(delivery_id, timeout=30) for delivery_id in ids]
    assert all(d.status is DeliveryStatus.DELIVERED for d in deliveries)
    assert own_receiver.max_inflight == 2  # six worker processes, two at a time here
    # Waiting for a slot is not an attempt.
    assert all(len(d.attempts) == 1 for d in deliveries)


@pytest.mark.usefixtures("isolation_worker")
def test_breaker_opens_parks_and_closes_on_a_good_probe(own_receiver, wait_for, redis_client):
    ids = [
        deliver.apply_async((own_receiver.url("/switch"), event()), queue="isolation").id
        for _ in range(10)
    ]
    time.sleep(0.8)
    # Three failures in a row opened the circuit: the rest are parked, unattempted.
    sent_while_open = len(own_receiver.received("/switch"))
    assert sent_while_open <= 3 + 2, sent_while_open
    port = own_receiver.base.rsplit(":", 1)[1]
    breaker = redis_client.hgetall(keys.destination_breaker(f"127.0.0.1:{port}"))
    assert float(breaker[b"open_until"]) > time.time() - 1
    parked = [d for d in (get_store().get(i) for i in ids) if not d.attempts]
    assert parked and all(d.next_attempt_at is not None for d in parked)

    own_receiver.switch_ok = True  # the receiver recovers; the next probe closes it
    deliveries = [wait_for(delivery_id, timeout=30) for delivery_id in ids]
    assert all(d.status is DeliveryStatus.DELIVERED for d in deliveries)
    assert sum(len(d.attempts) for d in deliveries) <= sent_while_open + 10
    assert not redis_client.hexists(keys.destination_breaker(f"127.0.0.1:{port}"), "open_until")


@pytest.mark.usefixtures("isolation_worker")
def test_records_without_a_stored_destination_are_limited_too(own_receiver, wait_for, redis_client):
    # As written by a version that did not store the destination with the record:
    # the claim cannot enter it, so the runner enters on its own.
    deliveries = [
        delivery
        for _ in range(6)
        for delivery in stored(event(), [(own_receiver.url("/sleep/0.5"), None)], queue="isolation")
    ]
    for delivery in deliveries:
        redis_client.hdel(keys.delivery(delivery.id), "destination")
    enqueue([Run(delivery.id) for delivery in deliveries], queue="isolation")
    done = [wait_for(delivery.id, timeout=30) for delivery in deliveries]
    assert all(d.status is DeliveryStatus.DELIVERED for d in done)
    assert own_receiver.max_inflight == 2
    port = own_receiver.base.rsplit(":", 1)[1]
    assert redis_client.zcard(keys.destination_inflight(f"127.0.0.1:{port}")) == 0


def test_a_run_queued_after_the_slots_freed_is_woken_at_once(quiet_db, settings_env):
    """The claim found the destination full, but every attempt in flight left before
    the run joined the queue (their leaves popped a queue it was not in yet): joining
    wakes it then, instead of leaving it to wait for an attempt that never comes."""
    from webhooks.storage.isolation import Entry, EntryOutcome, get_gate

    settings_env(destination_concurrency="1")
    (delivery,) = stored(event(), [("https://a.example/", None)])
    dest, run = "a.example:443", Run(delivery.id)
    full = Entry(EntryOutcome.BUSY, average_ms=50.0, ahead=0)
    other = Run("someone-else")
    quiet_db.zadd(keys.destination_inflight(dest), {other.member: time.time() + 60})
    get_gate().wait_for_slot(dest, run, full)  # still full: it waits
    assert quiet_db.zrange(keys.destination_waiting(dest), 0, -1) == [run.member.encode()]
    assert quiet_db.zscore(keys.scheduled(), run.member) is None
    quiet_db.zrem(keys.destination_inflight(dest), other.member)  # it left, popping nothing
    late = Run(stored(event(), [("https://a.example/x", None)])[0].id)
    get_gate().wait_for_slot(dest, late, full)  # joins a queue with a slot free
    # The oldest goes now, one per free slot; the other waits for its leave.
    assert quiet_db.zrange(keys.destination_waiting(dest), 0, -1) == [late.member.encode()]
    assert quiet_db.zrange(keys.scheduled(), 0, -1) == [run.member.encode()]
