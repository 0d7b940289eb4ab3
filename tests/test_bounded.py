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
