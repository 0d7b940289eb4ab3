"""A key held by failures does not slow the others: nine keys to one endpoint, timed
alone and beside a tenth key whose head fails every attempt, with real workers."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import event
from tests.ordering import own_store, start, wait_final
from webhooks.dev.receiver import Receiver
from webhooks.dev.worker import stop_workers
from webhooks.models import DeliveryStatus
from webhooks.producer import Producer, delivery_id
from webhooks.system import System

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _timed_run(system: System, tenant: str, keys: list[str], per_key: int) -> float:
    """Seconds from publishing ``per_key`` events of each key until all are delivered."""
    producer, ids = Producer(system), []
    started = time.monotonic()
    for n in range(per_key * len(keys)):
        ids += producer.publish(event(), tenant=tenant, ordering_key=keys[n % len(keys)])
    statuses = wait_final(system, ids, 60)
    assert set(statuses) == {DeliveryStatus.DELIVERED}
    return time.monotonic() - started


def test_a_key_held_by_failures_does_not_slow_the_others(tmp_path):
    with own_store() as system, Receiver() as receiver:
        system.tenants.add("acct_held", "Held")
        endpoint, _ = system.endpoints.add(receiver.url("/fail-listed"), tenant="acct_held")
        keys = [f"set_{k}" for k in range(9)]
        with ThreadPoolExecutor() as starting:  # a start is mostly waiting: both at once
            workers = list(starting.map(lambda n: start(tmp_path, f"held{n}"), range(2)))
        try:
            _timed_run(system, "acct_held", keys, 5)  # warm: connections, pools, scripts
            # The best of several rounds each: the machine's other load moves single
            # rounds. Five beside the held key, which cannot be measured between the
            # rounds alone: in CI the other lane's heavy tests made three of them all
            # slow once (1.92-2.28 s against 1.54 alone; 1.41-1.47 both ways here).
            alone = [_timed_run(system, "acct_held", keys, 30) for _ in range(3)]
            # One key's head now fails every attempt: it holds its key (the four behind
            # it wait), retrying, while the other keys go on.
            events = [event() for _ in range(5)]
            held = [delivery_id(e["id"], endpoint.url, endpoint.id) for e in events]
            with receiver.lock:
                receiver.failing.update(held)
            for raw in events:
                Producer(system).publish(raw, tenant="acct_held", ordering_key="held")
            with_held = [_timed_run(system, "acct_held", keys, 30) for _ in range(5)]
            statuses = system.deliveries.statuses(held)
            tried = [len(system.deliveries.get(i).attempts) for i in held]
        finally:
            stop_workers(workers)
    print(f"9 keys x 30 events: alone {alone} s, beside a held key {with_held} s")
    assert DeliveryStatus.DELIVERED not in statuses
    # Held in order: each was tried only once the one before it had given up.
    assert tried[0] > 1 and tried == sorted(tried, reverse=True)
    assert min(with_held) <= 1.2 * min(alone)
