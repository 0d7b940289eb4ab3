"""Ordered delivery on RabbitMQ, where the broker's queue is not in the store's Redis:
the deliveries waiting behind get no message at creation, and each is woken through
the schedule and the promoter. A real worker, a receiver failing 30 % of requests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.conftest import NEEDS_RABBITMQ, RABBITMQ, forget_queue
from tests.ordering import ENV, STORE_URL, assert_publish_order, publish_over_keys, wait_all
from webhooks.dev.receiver import Receiver
from webhooks.dev.worker import start_worker, stop_worker
from webhooks.models import DeliveryStatus
from webhooks.settings import Settings
from webhooks.system import System

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120), NEEDS_RABBITMQ]

PREFIX = "ordered-rabbit"  # the queue's name on RabbitMQ, and the store's keys


@pytest.fixture
def rabbit_store() -> Iterator[System]:
    forget_queue(PREFIX)
    client = redis.Redis.from_url(STORE_URL)
    client.flushdb()
    yield System(Settings(redis_url=STORE_URL, broker_url=RABBITMQ, key_prefix=PREFIX))
    client.flushdb()
    client.close()


def test_order_holds_on_rabbitmq(rabbit_store, tmp_path):
    system = rabbit_store
    env = {**ENV, "WEBHOOKS_BROKER_URL": RABBITMQ, "WEBHOOKS_KEY_PREFIX": PREFIX}
    with Receiver() as receiver:
        system.tenants.add("acct_rabbit", "Ordered")
        system.endpoints.add(receiver.url("/flaky/30"), tenant="acct_rabbit")
        worker = start_worker(tmp_path / "rabbit.log", env, "--concurrency=4")
        try:
            published = publish_over_keys(system, "acct_rabbit", 120, 4)
            counts = wait_all(system, published, 90)
        finally:
            stop_worker(worker)
        assert counts == {DeliveryStatus.DELIVERED: 120}
        assert_publish_order(receiver, published)
