"""RabbitMQ as the broker (WEBHOOKS_BROKER_URL), Redis as the store: a real worker on the
machine's RabbitMQ, on a quorum queue, delivers, retries through Celery's native
delayed delivery (a wait of a second or more) and through the parked schedule
(shorter ones), and exhausts, exactly as on Redis. Skips with the reason when no
RabbitMQ answers; tests/test_durability.py runs its chaos test on both brokers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest
import redis
from kombu import Exchange, Queue
from kombu.exceptions import OperationalError

from tests.conftest import (
    NEEDS_RABBITMQ,
    RABBITMQ,
    WORKER_ENV,
    as_bytes_list,
    database_url,
    event,
    forget_queue,
)
from tests.proxy import Proxy
from webhooks.broker import messages
from webhooks.broker.app import DELIVER
from webhooks.dev.receiver import Receiver
from webhooks.dev.worker import start_worker, stop_worker
from webhooks.errors import EnqueueFailed
from webhooks.models import Run
from webhooks.producer import Producer, delivery_id
from webhooks.settings import Settings
from webhooks.system import System

if TYPE_CHECKING:
    from amqp.protocol import queue_declare_ok_t
    from kombu.transport import pyamqp

ROOT = Path(__file__).resolve().parent.parent
STORE_URL = database_url(10)  # this module's store only
PREFIX = "rabbit-check"  # the queue's name on RabbitMQ


pytestmark = NEEDS_RABBITMQ


def _delayed_messages() -> int:
    """Messages in Celery's native delay queues (celery_delayed_0 holds 1 s, _1 2 s...)."""
    from kombu import Connection

    with Connection(RABBITMQ) as connection:
        channel = cast("pyamqp.Channel", connection.default_channel)  # an amqp:// URL's
        # amqp's types say tuple[str, int, int] | None; it answers a queue_declare_ok_t
        # (None only with nowait).
        return sum(
            cast(
                "queue_declare_ok_t",
                channel.queue_declare(f"celery_delayed_{level}", passive=True),
            ).message_count
            for level in range(3)
        )


@pytest.fixture
def rabbit_env(redis_client: redis.Redis) -> Iterator[dict[str, str]]:
    forget_queue(PREFIX)
    store = redis.Redis.from_url(STORE_URL)
    store.flushdb()
    yield {
        **WORKER_ENV,
        "WEBHOOKS_REDIS_URL": STORE_URL,
        "WEBHOOKS_BROKER_URL": RABBITMQ,
        "WEBHOOKS_RETRY_BASE_SECONDS": "0.0001",
        "WEBHOOKS_KEY_PREFIX": PREFIX,
    }
    store.flushdb()
    store.close()


def test_rabbitmq_delivers_retries_and_exhausts(
    rabbit_env: dict[str, str], receiver: Receiver, tmp_path: Path
) -> None:
    store = redis.Redis.from_url(STORE_URL)
    plan = {
        "bulk": [[receiver.url("/ok/rabbit"), event()] for _ in range(20)]
        + [[receiver.url("/fail/3/rabbit"), event()] for _ in range(3)]
        + [[receiver.url("/status/503/rabbit"), event()] for _ in range(2)]
        # Retry-After: 2 makes a wait RabbitMQ's delay queues hold.
        + [[receiver.url("/retry-after/2/rabbit"), event()]],
        "tenant": "",
        "published": [],
    }
    # As if this store's workers had been on the Redis broker until now.
    store.set(f"{PREFIX}:broker", STORE_URL)
    worker = start_worker(tmp_path / "worker.log", rabbit_env, "--concurrency=4")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.observed", json.dumps(plan)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, **rabbit_env},
        )
        assert done.returncode == 0, done.stderr
        ids = json.loads(done.stdout)["bulk"]
        delayed = ids[-1]
        deadline = time.monotonic() + 30
        while not receiver.received("/retry-after/2/rabbit"):
            assert time.monotonic() < deadline, "the Retry-After delivery was never attempted"
            time.sleep(0.02)
        # Its retry waits on RabbitMQ, not in the Redis schedule.
        waiting_in_rabbitmq, parked = 0, []
        while not waiting_in_rabbitmq and time.monotonic() < deadline:
            waiting_in_rabbitmq = _delayed_messages()
            parked += [
                m
                for m in as_bytes_list(store.zrange(f"{PREFIX}:scheduled", 0, -1))
                if m.decode().startswith(delayed)
            ]
            time.sleep(0.05)
        assert waiting_in_rabbitmq and parked == []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            final = store.zcard(f"{PREFIX}:deliveries:delivered") + store.zcard(
                f"{PREFIX}:deliveries:retries_exhausted"
            )
            if final == len(ids):
                break
            time.sleep(0.2)
    finally:
        stop_worker(worker)
    # Every message the worker took was acknowledged (a pass's acknowledgements are
    # written together, rabbitmq.py): none came back when its connection closed.
    assert _waiting(PREFIX) == 0
    statuses = [store.hget(f"{PREFIX}:delivery:{i}", "status") for i in ids]
    assert statuses == [b"delivered"] * 23 + [b"retries_exhausted"] * 2 + [b"delivered"]
    attempts = [store.llen(f"{PREFIX}:delivery:{i}:attempts") for i in ids]
    assert attempts == [1] * 20 + [4] * 3 + [15] * 2 + [2]
    first, second = receiver.received("/retry-after/2/rabbit")
    assert 2 <= second.at - first.at < 4, second.at - first.at
    # The worker said that the store's workers changed broker, and recorded its own.
    assert (
        f"this store's workers last started with the broker {STORE_URL}; this one uses "
        "amqp://guest:***@127.0.0.1:5672//"
    ) in (tmp_path / "worker.log").read_text()
    assert store.get(f"{PREFIX}:broker") == b"amqp://guest:***@127.0.0.1:5672//"
    # Each first-try delivery reached the receiver exactly once.
    got = Counter(r.headers["webhook-id"] for r in receiver.received("/ok/rabbit"))
    assert got == Counter(ids[:20])


CONFIRMS = "rabbit-confirms"  # the confirm tests' queue, and their keys' prefix
# The refusal test's: kombu's connection pools are the process's, and remember what
# they declared, so a queue of other arguments needs a name of its own.
LIMITED = "rabbit-confirms-limited"
URL = "http://127.0.0.1:9/hook"  # never attempted: no worker runs


def _waiting(queue: str) -> int:
    from kombu import Connection

    with Connection(RABBITMQ) as connection:
        channel = cast("pyamqp.Channel", connection.default_channel)
        reply = cast("queue_declare_ok_t", channel.queue_declare(queue, passive=True))
        return reply.message_count


@pytest.fixture
def confirms(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    forget_queue(CONFIRMS)
    forget_queue(LIMITED)
    store = redis.Redis.from_url(STORE_URL)
    store.flushdb()
    yield store
    forget_queue(CONFIRMS)
    forget_queue(LIMITED)
    store.flushdb()
    store.close()


def _system(
    broker: str = RABBITMQ,
    queue_arguments: dict[str, object] | None = None,
    confirm_timeout: float = 30.0,
) -> System:
    name = LIMITED if queue_arguments else CONFIRMS
    system = System(
        Settings(
            redis_url=STORE_URL,
            broker_url=broker,
            key_prefix=name,
            allowed_networks="127.0.0.0/8",
            broker_confirm_timeout_seconds=confirm_timeout,
            # A batch of one destination's deliveries, every message published: what
            # is checked here is the batch and its confirms, not admission at publish.
            destination_admission_margin=None,
        ),
        client=redis.Redis.from_url(STORE_URL),
    )
    if queue_arguments:
        # The queue as an operator may declare it: a length limit RabbitMQ enforces by
        # refusing (nacking) what would go over it.
        system.app.conf.task_queues = [
            Queue(
                name,
                Exchange(name, type="topic"),
                routing_key=name,
                queue_arguments={"x-queue-type": "quorum", **queue_arguments},
            )
        ]
    return system


def test_a_batch_goes_out_with_its_confirms_awaited_together(confirms: redis.Redis) -> None:
    system = _system()
    ids = Producer(system).deliver_many([(URL, event()) for _ in range(200)])
    assert _waiting(CONFIRMS) == 200
    with system.app.producer_or_acquire() as producer:
        # The pooled producer's channel counted the batch's delivery tags, one each.
        assert producer.channel._last_tag == 200
    assert all(confirms.exists(f"{CONFIRMS}:delivery:{i}") for i in ids)


def test_a_refused_batch_fails_the_call_and_is_undone(confirms: redis.Redis) -> None:
    system = _system(queue_arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    with pytest.raises(EnqueueFailed, match=r"could not publish 200 messages .*refused"):
        Producer(system).deliver_many([(URL, event()) for _ in range(200)])
    # Nothing half-written: the records RabbitMQ's refusal was for are gone, and the
    # messages it took (a quorum queue may take a few over its limit) find no record
    # when they come: a worker drops them.
    assert [k for k in confirms.scan_iter(f"{LIMITED}:delivery:*")] == []
    assert 0 < _waiting(LIMITED) < 200


def test_a_connection_lost_before_the_confirms_fails_the_call(confirms: redis.Redis) -> None:
    proxy = Proxy(5672)
    try:
        system = _system(f"amqp://guest:guest@127.0.0.1:{proxy.port}//")
        pairs = [(URL, event()) for _ in range(20)]
        last = delivery_id(str(pairs[-1][1]["id"]), pairs[-1][0], None)
        # The marker is in the last message of the batch: once it is sent, RabbitMQ's
        # confirms never arrive and the connection is reset.
        proxy.arm(last.encode(), cut=True)
        with pytest.raises(EnqueueFailed, match="could not publish 20 messages"):
            Producer(system).deliver_many(pairs)
        assert proxy.seen.is_set()
        assert [k for k in confirms.scan_iter(f"{CONFIRMS}:delivery:*")] == []
        # Retrying the same call is safe: it creates them, with the same ids.
        ids = Producer(system).deliver_many(pairs)
        assert all(confirms.exists(f"{CONFIRMS}:delivery:{i}") for i in ids)
    finally:
        proxy.close()


def test_a_silent_broker_fails_the_call_within_the_confirm_timeout(
    confirms: redis.Redis,
) -> None:
    proxy = Proxy(5672)
    try:
        system = _system(f"amqp://guest:guest@127.0.0.1:{proxy.port}//", confirm_timeout=1.0)
        pairs = [(URL, event()) for _ in range(20)]
        last = delivery_id(str(pairs[-1][1]["id"]), pairs[-1][0], None)
        # Once the batch's last message is sent, RabbitMQ's answers are held: the
        # connection stays open, and the confirms never come.
        proxy.arm(last.encode(), stall=True)
        started = time.monotonic()
        with pytest.raises(
            EnqueueFailed,
            match=rf"could not publish 20 messages \(RabbitMQ at 127\.0\.0\.1:{proxy.port} "
            r"confirmed \d+ of 20 messages within 1 s \(WEBHOOKS_BROKER_CONFIRM_TIMEOUT_SECONDS\)",
        ):
            Producer(system).deliver_many(pairs)
        assert time.monotonic() - started < 5
        assert proxy.seen.is_set()
        assert [k for k in confirms.scan_iter(f"{CONFIRMS}:delivery:*")] == []
        # The broker answers again: the same call goes out, on a new connection (the
        # silent one was dropped).
        proxy.release()
        ids = Producer(system).deliver_many(pairs)
        assert all(confirms.exists(f"{CONFIRMS}:delivery:{i}") for i in ids)
    finally:
        proxy.close()


def test_a_silent_broker_fails_a_single_publish_within_the_confirm_timeout(
    confirms: redis.Redis,
) -> None:
    # One message at a time, as send_task and a task's retry publish: py-amqp's own
    # wait for the confirm, bounded the same way.
    proxy = Proxy(5672)
    try:
        system = _system(f"amqp://guest:guest@127.0.0.1:{proxy.port}//", confirm_timeout=1.0)
        proxy.arm(b"silent-single", stall=True)
        started = time.monotonic()
        # kombu reports the timeout as its OperationalError, with the message.
        with pytest.raises(OperationalError, match=r"RabbitMQ at .* confirmed 0 of 1 messages"):
            system.app.send_task(
                "webhooks.tasks.deliver", args=("silent-single",), queue=CONFIRMS, retry=False
            )
        assert time.monotonic() - started < 5
    finally:
        proxy.close()


def test_a_batch_message_is_the_one_send_task_publishes(confirms: redis.Redis) -> None:
    # The batch's messages are built once for the batch (messages.py), not by
    # send_task each: what a worker takes off the queue must be the same.
    # A queue of its own: kombu's pools remember the queues they declared, the
    # fixture's included, which it deletes.
    queue = f"{CONFIRMS}-same"
    system = _system()
    run, trace = Run("dlv_same", 2, 3), {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"}
    forget_queue(queue)
    messages.publish(system.app, [run], queue, contexts={run.delivery_id: trace})
    system.app.send_task(
        DELIVER,
        args=(run.delivery_id,),
        kwargs={"cycle": run.cycle},
        task_id=run.delivery_id,
        retries=run.retries,
        ignore_result=True,
        add_to_parent=False,
        headers=trace,
        queue=queue,
    )
    from kombu import Connection

    with Connection(RABBITMQ) as connection:
        channel = cast("pyamqp.Channel", connection.default_channel)
        ours, theirs = channel.basic_get(queue), channel.basic_get(queue)
    forget_queue(queue)
    assert ours is not None and theirs is not None
    assert ours.body == theirs.body
    assert ours.properties == theirs.properties
    assert ours.delivery_info["routing_key"] == theirs.delivery_info["routing_key"]
    assert ours.delivery_info["exchange"] == theirs.delivery_info["exchange"]
