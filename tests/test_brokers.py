"""RabbitMQ as the broker (WEBHOOKS_BROKER_URL), Redis as the store: a real worker on the
machine's RabbitMQ delivers, retries through ETA messages and through the parked
schedule, and exhausts, exactly as on Redis. Skips with the reason when no RabbitMQ
answers."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import REDIS_URL, WORKER_ENV, event
from webhooks.dev.receiver import Receiver
from webhooks.dev.worker import start_worker, stop_worker

ROOT = Path(__file__).resolve().parent.parent
RABBITMQ = os.environ.get("WEBHOOKS_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
STORE_URL = REDIS_URL.rsplit("/", 1)[0] + "/10"  # this module's store only
PREFIX = "rabbit-check"  # the queue's name on RabbitMQ


def _rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=2):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _rabbitmq_answers(),
                                reason="no RabbitMQ answers at 127.0.0.1:5672")


@pytest.fixture
def rabbit_env(redis_client: redis.Redis) -> Iterator[dict[str, str]]:
    from amqp.exceptions import NotFound
    from kombu import Connection

    with Connection(RABBITMQ) as connection, contextlib.suppress(NotFound):
        connection.default_channel.queue_purge(PREFIX)  # NotFound: never declared yet
    store = redis.Redis.from_url(STORE_URL)
    store.flushdb()
    yield {**WORKER_ENV, "WEBHOOKS_REDIS_URL": STORE_URL, "WEBHOOKS_BROKER_URL": RABBITMQ,
           "WEBHOOKS_RETRY_BASE_SECONDS": "0.0001",
           "WEBHOOKS_KEY_PREFIX": PREFIX}
    store.flushdb()
    store.close()


def test_rabbitmq_delivers_retries_and_exhausts(rabbit_env: dict[str, str],
                                                receiver: Receiver, tmp_path: Path) -> None:
    store = redis.Redis.from_url(STORE_URL)
    plan = {"bulk": [[receiver.url("/ok/rabbit"), event()] for _ in range(20)]
            + [[receiver.url("/fail/3/rabbit"), event()] for _ in range(3)]
            + [[receiver.url("/status/503/rabbit"), event()] for _ in range(2)],
            "tenant": "", "published": []}
    worker = start_worker(tmp_path / "worker.log", rabbit_env, "--concurrency=4")
    try:
        done = subprocess.run([sys.executable, "-m", "tests.observed", json.dumps(plan)],
                              capture_output=True, text=True, timeout=60, cwd=ROOT,
                              env={**os.environ, **rabbit_env})
        assert done.returncode == 0, done.stderr
        ids = json.loads(done.stdout)["bulk"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            final = (store.zcard(f"{PREFIX}:deliveries:delivered")
                     + store.zcard(f"{PREFIX}:deliveries:retries_exhausted"))
            if final == len(ids):
                break
            time.sleep(0.2)
    finally:
        stop_worker(worker)
    statuses = [store.hget(f"{PREFIX}:delivery:{i}", "status") for i in ids]
    assert statuses == [b"delivered"] * 23 + [b"retries_exhausted"] * 2
    attempts = [store.llen(f"{PREFIX}:delivery:{i}:attempts") for i in ids]
    assert attempts == [1] * 20 + [4] * 3 + [15] * 2
    # Each first-try delivery reached the receiver exactly once.
    got = Counter(r.headers["webhook-id"] for r in receiver.received("/ok/rabbit"))
    assert got == Counter(ids[:20])
