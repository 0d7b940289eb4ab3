"""Nothing lost, nothing doubled when a worker dies or stops: an attempt cut by SIGKILL,
early redeliveries, a warm shutdown and a killed worker's prefetched messages, with
real workers (the chaos runs: tests/test_durability.py)."""

from __future__ import annotations

import collections
import json
import time

import pytest
import redis

from tests.conftest import WORKER_ENV, event
from webhooks.dev.worker import kill_worker, start_worker, stop_worker
from webhooks.models import DeliveryStatus
from webhooks.system import get_store
from webhooks.worker.task import deliver


def _env(**values: str) -> dict[str, str]:
    return {**WORKER_ENV, **{f"WEBHOOKS_{k.upper()}": v for k, v in values.items()}}


@pytest.mark.slow
def test_an_attempt_cut_by_sigkill_is_run_again_within_the_bound(
    receiver, wait_for, tmp_path, redis_client
):
    env = _env(timeout_seconds="3", recovery_seconds="4", visibility_timeout_seconds="5")
    worker = start_worker(tmp_path / "a.log", env, "-Q", "crash", "--concurrency=2", "-n", "a@%h")
    try:
        result = deliver.apply_async((receiver.url("/sleep-once/2"), event()), queue="crash")
        deadline = time.monotonic() + 20
        while not receiver.received("/sleep-once/2", result.id):
            assert time.monotonic() < deadline, "the attempt never started"
            time.sleep(0.01)
        killed_at = time.time()
        kill_worker(worker)  # mid-attempt: the receiver is still sleeping on it
        worker = start_worker(
            tmp_path / "b.log", env, "-Q", "crash", "--concurrency=2", "-n", "b@%h"
        )
        delivery = wait_for(result.id, timeout=30)
        assert delivery.status is DeliveryStatus.DELIVERED
        first, second = receiver.received("/sleep-once/2", result.id)
        # The claim lapses 4 s after the attempt began; the next promoter pass
        # (at most 1 s) schedules it again.
        assert second.at - first.at <= 4 + 1.5, second.at - first.at
        assert second.at > killed_at
        assert [a.number for a in delivery.attempts] == [1]  # the cut attempt left no record
        # The dead worker's unacknowledged message comes back after the 5 s
        # visibility timeout, and is dropped: the attempt is on record.
        time.sleep(7)
        assert len(receiver.received("/sleep-once/2", result.id)) == 2
    finally:
        stop_worker(worker)


@pytest.mark.slow
def test_short_visibility_timeout_and_longer_countdown_give_no_duplicates(
    receiver, wait_for, tmp_path
):
    # Measured before parking and claims: a 5 s visibility timeout and a 20 s
    # countdown ran every task 4 times. Here the timeout is 1 s; the first wait
    # (1.5 s) stays an ETA message that Redis hands out again, the second (3 s)
    # is parked.
    env = _env(retry_base_seconds="1.5", park_threshold_seconds="2", visibility_timeout_seconds="1")
    worker = start_worker(
        tmp_path / "v.log", env, "-Q", "visibility", "--concurrency=4", "-n", "v@%h"
    )
    try:
        ids = [
            deliver.apply_async((receiver.url("/fail/2"), event()), queue="visibility").id
            for _ in range(50)
        ]
        for delivery_id in ids:
            assert wait_for(delivery_id, timeout=60).status is DeliveryStatus.DELIVERED
        time.sleep(2)
    finally:
        stop_worker(worker)
    per_id = collections.Counter(
        r.headers["webhook-id"]
        for r in receiver.received("/fail/2")
        if r.headers["webhook-id"] in set(ids)
    )
    assert per_id == {delivery_id: 3 for delivery_id in ids}  # 0 duplicate attempts
    assert all(len(get_store().get(i).attempts) == 3 for i in ids)


def _queued_ids(client: redis.Redis, queue: str) -> list[str]:
    """The delivery ids of the messages waiting in a queue's list on the Redis broker."""
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange(queue, 0, -1)]


@pytest.mark.slow
def test_a_warm_shutdown_hands_back_what_the_worker_took_and_did_not_start(
    receiver, wait_for, tmp_path, redis_client
):
    # Without kombu's ack emulation, a message taken from Redis lives only in the
    # worker until it is acknowledged: a short retry's ETA message, and those
    # prefetched behind the attempt in flight. A warm shutdown must put them back.
    env = _env(retry_base_seconds="4", park_threshold_seconds="30")
    env.update(WEBHOOKS_TIMEOUT_SECONDS="3", WEBHOOKS_RECOVERY_SECONDS="4")
    slow_path, failing_path = "/sleep/1/handback", "/fail/1/handback"  # this test's own
    worker = start_worker(tmp_path / "h1.log", env, "-Q", "handback", "--concurrency=1")
    try:
        retried = deliver.apply_async((receiver.url(failing_path), event()), queue="handback").id
        wait_for(retried, until=lambda d: len(d.attempts) == 1)
        slow = [
            deliver.apply_async((receiver.url(slow_path), event()), queue="handback").id
            for _ in range(3)
        ]
        deadline = time.monotonic() + 20
        while not (receiver.received(slow_path) and redis_client.llen("handback") == 0):
            assert time.monotonic() < deadline, "the worker never took the messages"
            time.sleep(0.02)
        assert not redis_client.exists("unacked")  # kombu's emulation is off
    finally:
        stop_worker(worker)  # the attempt in flight finishes; the rest goes back
    started = {r.headers["webhook-id"] for r in receiver.received(slow_path)}
    handed_back = _queued_ids(redis_client, "handback")
    # The retry's ETA message is back on the queue, or parked in the schedule when
    # the pool process took it off the queue itself (worker/drain.py).
    parked = {
        member.decode().split(":")[0] for member in redis_client.zrange("webhooks:scheduled", 0, -1)
    }
    assert len(started) == 1
    assert len(handed_back) == len(set(handed_back))
    assert set(handed_back) | (parked & {retried}) == {retried, *(set(slow) - started)}
    worker = start_worker(tmp_path / "h2.log", env, "-Q", "handback", "--concurrency=4")
    try:
        for delivery_id in [retried, *slow]:
            assert wait_for(delivery_id, timeout=30).status is DeliveryStatus.DELIVERED
    finally:
        stop_worker(worker)
    per_id = collections.Counter(r.headers["webhook-id"] for r in receiver.received(slow_path))
    assert per_id == {delivery_id: 1 for delivery_id in slow}
    assert len(receiver.received(failing_path, retried)) == 2


@pytest.mark.slow
def test_what_a_killed_worker_had_prefetched_comes_back_through_the_backstop(
    receiver, wait_for, tmp_path, redis_client
):
    # A SIGKILL leaves nothing to hand back: the messages the worker had prefetched
    # are gone from the broker. Their deliveries have nothing scheduled, claimed or
    # running, so the backstop schedules them once they are overdue by twice
    # WEBHOOKS_RECOVERY_SECONDS; the attempt cut mid-way comes back through its claim.
    recovery = 4.0
    env = _env(timeout_seconds="3", recovery_seconds=str(recovery))
    path = "/sleep-once/2/prefetched"  # this test's own
    worker = start_worker(tmp_path / "k1.log", env, "-Q", "prefetched", "--concurrency=1")
    try:
        ids = [
            deliver.apply_async((receiver.url(path), event()), queue="prefetched").id
            for _ in range(4)
        ]
        created = time.time()
        deadline = time.monotonic() + 20
        while not (receiver.received(path) and redis_client.llen("prefetched") == 0):
            assert time.monotonic() < deadline, "the worker never took the messages"
            time.sleep(0.02)
        kill_worker(worker)
        assert redis_client.llen("prefetched") == 0 and not redis_client.exists("unacked")
        worker = start_worker(tmp_path / "k2.log", env, "-Q", "prefetched", "--concurrency=4")
        for delivery_id in ids:
            assert wait_for(delivery_id, timeout=40).status is DeliveryStatus.DELIVERED
        last = max(r.at for r in receiver.received(path))
    finally:
        stop_worker(worker)
    # Overdue by twice the bound, then the next backstop pass (every min(10 s, the
    # bound)) and its promotion; 3 s more for a loaded machine.
    bound = 2 * recovery + min(10, recovery) + 3
    assert last - created <= bound, last - created
    received = receiver.received(path)
    per_id = collections.Counter(r.headers["webhook-id"] for r in received)
    assert set(per_id) == set(ids)
    assert sum(per_id.values()) == len(ids) + 1  # only the cut attempt was made twice
    print(
        f"\nprefetched by a SIGKILLed worker: the last of {len(ids)} delivered "
        f"{last - created:.1f} s after they were sent (bound {bound:.0f} s)"
    )
