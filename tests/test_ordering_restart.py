"""Ordered delivery across a Redis SIGKILL and restart (AOF, fsync every second): with
a real worker and a receiver failing 30 % of requests, each key's first successful
receipts still come in publish order."""

from __future__ import annotations

import time

import pytest

from tests.ordering import assert_publish_order, own_store, publish_over_keys, start, wait_all
from webhooks.dev.receiver import Receiver
from webhooks.dev.redis_server import RedisProcess
from webhooks.dev.worker import stop_worker
from webhooks.models import DeliveryStatus

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_order_holds_across_a_redis_restart(tmp_path):
    with RedisProcess(tmp_path) as server, own_store(server.url) as system, Receiver() as receiver:
        system.tenants.add("acct_restart", "Restart")
        system.endpoints.add(receiver.url("/flaky/30"), tenant="acct_restart")
        worker = start(tmp_path, "restart", server.url)
        try:
            published = publish_over_keys(system, "acct_restart", 300, 5)
            time.sleep(1.5)  # mid-run, with every record on disk (AOF syncs every second)
            server.kill()  # SIGKILL: what the AOF had not synced is lost
            time.sleep(1)
            server.start()
            counts = wait_all(system, published, 90)
        finally:
            stop_worker(worker)
        assert counts == {DeliveryStatus.DELIVERED: 300}
        assert_publish_order(receiver, published)
