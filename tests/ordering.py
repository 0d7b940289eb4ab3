"""What the ordered-delivery tests with real workers share: their workers' settings, a
store of their own (database 5 of the lane's Redis, which no other worker reads),
publishing over keys, and the check that each key's first 2XX receipts came in
publish order."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import Popen

import redis

from tests.conftest import WORKER_ENV, database_url, event
from webhooks.dev.receiver import Receiver
from webhooks.dev.worker import start_worker
from webhooks.models import FINAL_STATUSES, DeliveryStatus
from webhooks.producer import Producer
from webhooks.settings import Settings
from webhooks.system import System

STORE_URL = database_url(5)
ENV = {
    **WORKER_ENV,
    "WEBHOOKS_REDIS_URL": STORE_URL,
    "WEBHOOKS_RETRY_BASE_SECONDS": "0.001",
    "WEBHOOKS_PROMOTE_INTERVAL_SECONDS": "0.02",
    # A SIGKILLed worker's claims lapse, and what it had prefetched is found, within
    # 1.5 to 4.5 s (an attempt's deadline must stay a second under the bound).
    "WEBHOOKS_TIMEOUT_SECONDS": "0.5",
    "WEBHOOKS_CONNECT_TIMEOUT_SECONDS": "0.5",
    "WEBHOOKS_RECOVERY_SECONDS": "1.5",
}


@contextmanager
def own_store(url: str = STORE_URL) -> Iterator[System]:
    """A System on ``url``, empty before and after."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield System(Settings(redis_url=url), client=client)
    finally:
        client.flushdb()
        client.close()


def start(tmp_path: Path, name: str, url: str = STORE_URL) -> Popen[bytes]:
    """A worker of 4 processes on ``url`` with :data:`ENV`."""
    env = {**ENV, "WEBHOOKS_REDIS_URL": url}
    return start_worker(tmp_path / f"{name}.log", env, "--concurrency=4", "-n", f"{name}@%h")


def wait_final(system: System, ids: list[str], seconds: float) -> list[DeliveryStatus | None]:
    deadline = time.monotonic() + seconds
    while True:
        statuses = system.deliveries.statuses(ids)
        if all(status in FINAL_STATUSES for status in statuses):
            return statuses
        assert time.monotonic() < deadline, collections.Counter(statuses)
        time.sleep(0.02)


def wait_all(
    system: System, published: dict[str, list[str]], seconds: float
) -> collections.Counter[DeliveryStatus | None]:
    """The statuses of every delivery :func:`publish_over_keys` made, once all are final."""
    return collections.Counter(
        wait_final(system, [i for ids in published.values() for i in ids], seconds)
    )


def publish_over_keys(system: System, tenant: str, count: int, keys: int) -> dict[str, list[str]]:
    """``count`` events published round-robin over ``keys`` keys: each key's delivery
    ids in publish order."""
    producer = Producer(system)
    published: dict[str, list[str]] = {f"set_{k}": [] for k in range(keys)}
    for n in range(count):
        key = f"set_{n % keys}"
        published[key] += producer.publish(event(), tenant=tenant, ordering_key=key)
    return published


def assert_publish_order(receiver: Receiver, published: dict[str, list[str]]) -> None:
    """For each key, the receiver's first 200 answers to its deliveries (webhook ids)
    came in publish order."""
    seen: set[str] = set()
    firsts = []
    with receiver.lock:
        answers = list(receiver.answers)
    for _, webhook_id, code in answers:
        if code == 200 and webhook_id not in seen:
            seen.add(webhook_id)
            firsts.append(webhook_id)
    for key, order in published.items():
        mine = set(order)
        assert [i for i in firsts if i in mine] == order, key
