"""Per-destination isolation: a concurrency limit and a circuit breaker, across workers."""

from __future__ import annotations

import time

import pytest

from tests.conftest import WORKER_ENV, event, keys, stored
from webhooks.dev.worker import start_worker, stop_worker
from webhooks.models import DeliveryStatus, Run
from webhooks.producer import Producer
from webhooks.system import get_default, get_store
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
    breaker = redis_client.hgetall(keys().destination_breaker(f"127.0.0.1:{port}"))
    assert float(breaker[b"open_until"]) > time.time() - 1
    parked = [d for d in (get_store().get(i) for i in ids) if not d.attempts]
    assert parked and all(d.next_attempt_at is not None for d in parked)

    own_receiver.switch_ok = True  # the receiver recovers; the next probe closes it
    deliveries = [wait_for(delivery_id, timeout=30) for delivery_id in ids]
    assert all(d.status is DeliveryStatus.DELIVERED for d in deliveries)
    assert sum(len(d.attempts) for d in deliveries) <= sent_while_open + 10
    assert not redis_client.hexists(keys().destination_breaker(f"127.0.0.1:{port}"), "open_until")


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
        redis_client.hdel(keys().delivery(delivery.id), "destination")
    Producer(get_default()).enqueue(
        [Run(delivery.id) for delivery in deliveries], queue="isolation"
    )
    done = [wait_for(delivery.id, timeout=30) for delivery in deliveries]
    assert all(d.status is DeliveryStatus.DELIVERED for d in done)
    assert own_receiver.max_inflight == 2
    port = own_receiver.base.rsplit(":", 1)[1]
    assert redis_client.zcard(keys().destination_inflight(f"127.0.0.1:{port}")) == 0


def test_a_run_queued_after_the_slots_freed_is_woken_at_once(quiet_db, settings_env):
    """The claim found the destination full, but every attempt in flight left before
    the run joined the queue (their leaves popped a queue it was not in yet): joining
    wakes it then, instead of leaving it to wait for an attempt that never comes."""
    from webhooks.storage.destinations import Entry, EntryOutcome

    settings_env(destination_concurrency="1")
    (delivery,) = stored(event(), [("https://a.example/", None)])
    dest, run = "a.example:443", Run(delivery.id)
    full = Entry(EntryOutcome.BUSY, average_ms=50.0, ahead=0)
    other = Run("someone-else")
    quiet_db.zadd(keys().destination_inflight(dest), {other.member: time.time() + 60})
    get_default().gate.wait_for_slot(dest, run, full)  # still full: it waits
    assert quiet_db.zrange(keys().destination_waiting(dest), 0, -1) == [run.member.encode()]
    assert quiet_db.zscore(keys().scheduled(), run.member) is None
    quiet_db.zrem(keys().destination_inflight(dest), other.member)  # it left, popping nothing
    late = Run(stored(event(), [("https://a.example/x", None)])[0].id)
    get_default().gate.wait_for_slot(dest, late, full)  # joins a queue with a slot free
    # The oldest goes now, one per free slot; the other waits for its leave.
    assert quiet_db.zrange(keys().destination_waiting(dest), 0, -1) == [late.member.encode()]
    assert quiet_db.zrange(keys().scheduled(), 0, -1) == [run.member.encode()]


@pytest.fixture(scope="module")
def blackhole_worker(redis_client, tmp_path_factory):
    env = {
        **WORKER_ENV,
        "WEBHOOKS_DESTINATION_CONCURRENCY": "2",
        "WEBHOOKS_BREAKER_FAILURES": "100",  # only stalled attempts can open it here
        "WEBHOOKS_BREAKER_STALLED_SECONDS": "0.5",
        "WEBHOOKS_BREAKER_COOLDOWN_SECONDS": "1",
    }
    worker = start_worker(
        tmp_path_factory.mktemp("blackhole") / "worker.log",
        env,
        "-Q",
        "blackhole",
        "--concurrency=4",
        "-n",
        "blackhole@%h",
    )
    yield
    stop_worker(worker)


@pytest.mark.usefixtures("blackhole_worker")
def test_a_blackhole_opens_its_circuit_and_its_backlog_waits_for_the_probe(
    own_receiver, wait_for, redis_client
):
    """Attempts that hang open the circuit long before 100 of them have failed; the
    backlog then waits in the destination's queue, unattempted and with no message of
    its own, until a probe finds the receiver answering and wakes it."""
    ids = [
        deliver.apply_async((own_receiver.url("/hang"), event()), queue="blackhole").id
        for _ in range(8)
    ]
    dest = f"127.0.0.1:{own_receiver.base.rsplit(':', 1)[1]}"
    breaker, waiting = keys().destination_breaker(dest), keys().destination_waiting(dest)
    deadline = time.monotonic() + 10
    while not redis_client.hexists(breaker, "open_until") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert redis_client.hexists(breaker, "open_until")
    assert int(redis_client.hget(breaker, "failures") or 0) <= 4
    time.sleep(0.3)  # the failed attempts' retries are set aside too
    unattempted = {i for i in ids if not get_store().get(i).attempts}
    queued = set(redis_client.zrange(waiting, 0, -1))
    assert len(queued) >= 4, queued
    sent = len(own_receiver.received("/hang"))
    # While the circuit stays open only probes go out, one at a time (a failed one
    # wakes the next); the queue is not scheduled meanwhile, so it sends no messages.
    time.sleep(1.5)
    assert len(own_receiver.received("/hang")) <= sent + 2
    still = set(redis_client.zrange(waiting, 0, -1))
    assert len(queued - still) <= 1
    assert not any(redis_client.zscore(keys().scheduled(), member) for member in still)

    own_receiver.switch_ok = True
    done = [wait_for(i, timeout=20) for i in ids]
    assert all(d.status is DeliveryStatus.DELIVERED for d in done)
    # Waiting cost them no attempt.
    # Waiting cost those that waited throughout no attempt: the one they made went.
    waited = [d for d in done if d.id in unattempted and Run(d.id).member.encode() in still]
    assert waited and all(len(d.attempts) == 1 for d in waited)
    assert not redis_client.hexists(breaker, "open_until")
    assert redis_client.zcard(waiting) == 0


def test_only_a_full_destination_of_stalled_attempts_opens(quiet_db, settings_env):
    from webhooks.storage.destinations import EntryOutcome

    settings_env(destination_concurrency="1", breaker_stalled_seconds="0.2")
    gate, dest = get_default().gate, "a.example:443"
    assert gate.enter(dest, Run("first"), lease=30).outcome is EntryOutcome.OK
    # Full, but its attempt got in just now: wait for a slot.
    assert gate.enter(dest, Run("second"), lease=30).outcome is EntryOutcome.BUSY
    time.sleep(0.25)
    opened = gate.enter(dest, Run("second"), lease=30)
    assert opened.outcome is EntryOutcome.OPEN
    assert opened.retry_at >= time.time() + 29  # the default 30 s cooldown
    breaker = quiet_db.hgetall(keys().destination_breaker(dest))
    assert b"failures" not in breaker
    assert dest.encode() in quiet_db.zrange(keys().open_circuits(), 0, -1)


def test_runs_set_aside_behind_a_scheduled_probe_are_not_lost(quiet_db, settings_env):
    """The first run set aside for an opening is scheduled to probe, the others wait in
    the destination's queue; should nothing ever wake them (the probe's delivery was
    deleted, the queue expired), their due marks bring them back through the backstop."""
    from webhooks.worker.promoter import Promoter

    settings_env(recovery_seconds="3", timeout_seconds="1")
    system = get_default()
    dest, until = "a.example:443", time.time() + 60
    quiet_db.hset(keys().destination_breaker(dest), "open_until", str(until))
    runs = [Run(d.id) for _ in range(3) for d in stored(event(), [("https://a.example/", None)])]
    assert [system.gate.defer(dest, run, until) for run in runs] == [True, False, False]
    assert quiet_db.zrange(keys().scheduled(), 0, -1) == [runs[0].member.encode()]
    waiting = keys().destination_waiting(dest)
    assert quiet_db.zrange(waiting, 0, -1) == [run.member.encode() for run in runs[1:]]
    assert all(system.deliveries.get(run.delivery_id).next_attempt_at for run in runs)

    quiet_db.delete(waiting, keys().scheduled())  # lost, every one
    Promoter(system).backstop(until + 7)
    assert sorted(quiet_db.zrange(keys().scheduled(), 0, -1)) == sorted(
        run.member.encode() for run in runs
    )


def test_a_destination_s_keys_keep_their_expiry_pushed_on_at_most_once_a_minute(quiet_db, receiver):
    """The breaker lives a day and the in-flight set an hour past their last use: their
    expiry is pushed on when the breaker's note of the last push is a minute old, not
    on every attempt; a new in-flight set (an empty one is deleted) always gets one."""
    from webhooks.worker.runner import Done, RunResult, run_attempt

    system = get_default()
    port = receiver.base.rsplit(":", 1)[1]
    dest = f"127.0.0.1:{port}"
    breaker, inflight = keys().destination_breaker(dest), keys().destination_inflight(dest)

    def deliver_one() -> None:
        (delivery,) = stored(event(), [(receiver.url("/ok/kept"), None)])
        assert run_attempt(system, delivery.id, 0, 0) == Done(RunResult.DELIVERED)

    deliver_one()
    assert 86400 - 5 < quiet_db.ttl(breaker) <= 86400
    kept_at = float(quiet_db.hget(breaker, "kept_at"))
    assert time.time() - 5 < kept_at <= time.time()

    # Pushed on less than a minute ago: the next attempt leaves the expiry alone...
    quiet_db.expire(breaker, 500)
    deliver_one()
    assert quiet_db.ttl(breaker) <= 500
    # ... and a minute on, pushes it a day on again.
    quiet_db.hset(breaker, "kept_at", str(time.time() - 61))
    deliver_one()
    assert quiet_db.ttl(breaker) > 86400 - 5
    assert float(quiet_db.hget(breaker, "kept_at")) > time.time() - 5

    # Entered empty, the in-flight set is new: it gets its hour.
    assert system.gate.enter(dest, Run("first"), lease=30).allowed
    assert 3600 - 5 < quiet_db.ttl(inflight) <= 3600
    # In use, with a note older than a minute (none yet): pushed on, and noted.
    quiet_db.expire(inflight, 500)
    assert system.gate.enter(dest, Run("second"), lease=30).allowed
    assert quiet_db.ttl(inflight) > 3600 - 5
    noted = float(quiet_db.hget(breaker, "inflight_kept_at"))
    # Noted a moment ago: left alone.
    quiet_db.expire(inflight, 500)
    assert system.gate.enter(dest, Run("third"), lease=30).allowed
    assert quiet_db.ttl(inflight) <= 500
    assert float(quiet_db.hget(breaker, "inflight_kept_at")) == noted


def test_an_in_flight_set_whose_breaker_expired_is_not_given_a_breaker_without_expiry(
    quiet_db,
):
    """Pushing the in-flight set's expiry on writes its note only into a breaker that an
    attempt's leaving wrote (and gave an expiry): never creates one that lives forever."""
    system, dest = get_default(), "gone.example:443"
    breaker, inflight = keys().destination_breaker(dest), keys().destination_inflight(dest)
    quiet_db.zadd(inflight, {"earlier:0:0": time.time() + 30})
    assert system.gate.enter(dest, Run("next"), lease=30).allowed
    assert quiet_db.ttl(inflight) > 3600 - 5
    assert not quiet_db.exists(breaker)
