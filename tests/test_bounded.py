"""Attempts are bounded: in time whatever the receiver does, and in memory whatever it sends."""

from __future__ import annotations

import pytest

from tests.conftest import event
from webhooks.dev.worker import tree_rss_kb
from webhooks.models import DeliveryStatus
from webhooks.worker.task import deliver

pytestmark = pytest.mark.usefixtures("worker")

TIMEOUT_MS = 1000  # the worker's WEBHOOKS_TIMEOUT_SECONDS


@pytest.mark.parametrize("path", ["/drip-once", "/slow-headers-once"])
def test_a_slow_receiver_cannot_stretch_an_attempt(receiver, wait_for, path):
    # One byte a second: every read succeeds within the read timeout, so only a
    # deadline on the whole attempt ends it.
    result = deliver.delay(receiver.url(path), event())
    delivery = wait_for(result.id, timeout=20)

    first = delivery.attempts[0]
    assert first.error is not None and first.error.kind == "timeout", first
    assert first.status_code is None
    assert first.duration_ms < TIMEOUT_MS + 1500
    assert delivery.status is DeliveryStatus.DELIVERED  # the retry got a quick answer


def test_a_50_mb_answer_is_not_read_into_memory(receiver, wait_for, worker):
    # Warm every pool process first, so the baseline includes what a first
    # delivery loads anyway.
    for _ in range(8):
        wait_for(deliver.delay(receiver.url("/ok"), event()).id)
    baseline = tree_rss_kb(worker.pid)

    results = [deliver.delay(receiver.url("/huge50"), event()) for _ in range(8)]
    deliveries = [wait_for(result.id, timeout=60) for result in results]

    growth_mb = (tree_rss_kb(worker.pid) - baseline) / 1024
    assert growth_mb < 20, f"worker RSS grew by {growth_mb:.1f} MB"
    for delivery in deliveries:
        assert delivery.status is DeliveryStatus.DELIVERED
        assert delivery.attempts[0].response_body == "y" * 4096


def test_a_deadline_earlier_than_every_armed_one_still_fires_on_time():
    import time

    from webhooks.sending.transport import Alarm, _watchdog

    # The watchdog thread is woken only for a new earliest deadline: this is that case.
    later = Alarm(time.monotonic() + 30)
    _watchdog.arm(later)
    time.sleep(0.1)  # the thread is asleep until the later deadline
    sooner = Alarm(time.monotonic() + 0.2)
    _watchdog.arm(sooner)
    give_up = time.monotonic() + 3
    while not sooner.fired and time.monotonic() < give_up:
        time.sleep(0.01)
    later.cancelled = True
    assert sooner.fired and not later.fired


def test_the_watchdog_wakes_for_live_deadlines_not_once_per_cancelled_one():
    import threading
    import time

    from webhooks.sending.transport import Alarm, _Watchdog

    class Counting(threading.Condition):
        waits = 0

        def wait(self, timeout: float | None = None) -> bool:
            type(self).waits += 1
            return super().wait(timeout)

    watchdog = _Watchdog()
    watchdog._wake = Counting()
    start = time.monotonic()
    # Fifty attempts, each over long before its deadline, as nearly all are.
    for n in range(50):
        done = Alarm(start + 0.1 + n * 0.004)
        watchdog.arm(done)
        done.cancelled = True
    live = Alarm(start + 0.5)
    watchdog.arm(live)
    while not live.fired and time.monotonic() < start + 3:
        time.sleep(0.01)
    assert live.fired and time.monotonic() - start < 1.0
    # Woken at the first cancelled deadline, then for the live one: not fifty times.
    assert Counting.waits <= 4, Counting.waits
