"""Ordered delivery with real workers, a real receiver and SIGKILLs: 1,000 events over
10 keys, 30 % of requests failing, a worker SIGKILLed 3 times; for each key, the
receiver's first successful receipts come in publish order."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.ordering import assert_publish_order, own_store, publish_over_keys, start, wait_all
from webhooks.dev.receiver import Receiver
from webhooks.dev.worker import kill_worker, stop_workers
from webhooks.models import DeliveryStatus

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_order_holds_with_failures_and_sigkills(tmp_path):
    with own_store() as system, Receiver() as receiver:
        system.tenants.add("acct_ordered", "Ordered")
        system.endpoints.add(receiver.url("/flaky/30"), tenant="acct_ordered")
        with ThreadPoolExecutor() as starting:  # a start is mostly waiting: both at once
            workers = list(starting.map(lambda n: start(tmp_path, f"order{n}"), range(2)))
        kills, stop = 0, threading.Event()

        def killer() -> None:
            nonlocal kills
            for round_ in range(3):
                if stop.wait(1.0):
                    return
                n = round_ % 2
                kill_worker(workers[n])
                kills += 1
                workers[n] = start(tmp_path, f"order{n}-{round_}")

        chaos = threading.Thread(target=killer)
        started = time.monotonic()
        try:
            chaos.start()
            published = publish_over_keys(system, "acct_ordered", 1000, 10)
            counts = wait_all(system, published, 90)
            chaos.join()
        finally:
            stop.set()
            chaos.join()
            stop_workers(workers)
        elapsed = time.monotonic() - started
        print(f"1,000 ordered deliveries over 10 keys, 30 % failures, 3 SIGKILLs: {elapsed:.1f} s")
        assert kills == 3
        assert counts == {DeliveryStatus.DELIVERED: 1000}
        assert_publish_order(receiver, published)
        assert system.deliveries.get(published["set_0"][-1]).waiting_behind is None
