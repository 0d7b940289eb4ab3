"""Nothing lost, nothing doubled: chaos with real workers, SIGKILLed during 2,000
deliveries to a flaky receiver, on each broker (single crashes, early redeliveries
and warm shutdowns: tests/test_crashes.py)."""

from __future__ import annotations

import collections
import threading
import time

import pytest
import redis

from tests.conftest import RABBITMQ, WORKER_ENV, database_url, event, forget_queue
from tests.producer import Producer
from webhooks.dev.worker import kill_worker, start_worker, stop_worker
from webhooks.models import FINAL_STATUSES, DeliveryStatus
from webhooks.system import System


def _env(**values: str) -> dict[str, str]:
    return {**WORKER_ENV, **{f"WEBHOOKS_{k.upper()}": v for k, v in values.items()}}


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_chaos_sigkill_and_flaky_receiver(broker, receiver, tmp_path, redis_client, request):
    total, concurrency = 2000, 4
    env = _env(recovery_seconds="3", visibility_timeout_seconds="5")
    # A store of its own, which no other worker touches: its figures are the chaos
    # run's alone, and no other worker's promoter publishes its parked runs (a
    # worker on the Redis broker would publish them where no RabbitMQ chaos worker
    # listens: measured, 128 s instead of 32, each such run found by the backstop
    # only). Workers of one store share one broker; see the scale docs.
    store_url = database_url(10)
    own = redis.Redis.from_url(store_url)
    own.flushdb()
    request.addfinalizer(own.close)
    store = System(client=own).deliveries
    env.update(WEBHOOKS_REDIS_URL=store_url)
    if broker == "rabbitmq":
        request.getfixturevalue("rabbitmq")  # or it is missing: skip, or fail in CI
        env.update(WEBHOOKS_BROKER_URL=RABBITMQ)
        forget_queue("chaos")
    # A producer process: this one's Celery app is configured for the Redis broker.
    producer = Producer({**env, "PRODUCER_QUEUE": "chaos"})
    workers = [
        start_worker(
            tmp_path / f"chaos{n}.log",
            env,
            "-Q",
            "chaos",
            f"--concurrency={concurrency}",
            "-n",
            f"chaos{n}-0@%h",
        )
        for n in range(2)
    ]
    kills = 0
    stop = threading.Event()

    def killer() -> None:
        nonlocal kills
        for round_ in range(3):
            for n in range(2):
                if stop.wait(1.2):
                    return
                kill_worker(workers[n])
                kills += 1
                workers[n] = start_worker(
                    tmp_path / f"chaos{n}-{round_}.log",
                    env,
                    "-Q",
                    "chaos",
                    f"--concurrency={concurrency}",
                    "-n",
                    f"chaos{n}-{round_ + 1}@%h",
                )

    chaos = threading.Thread(target=killer)
    try:
        chaos.start()
        for _ in range(total // 100):  # paced over ~8 s, so the kills land mid-run
            producer.send(receiver.url("/flaky/30"), [event() for _ in range(100)])
            time.sleep(0.4)
        ids = [str(line["id"]) for line in producer.wait(total, 60)]
        chaos.join()
        deadline = time.monotonic() + 150
        while True:
            statuses = store.statuses(ids)
            if all(status in FINAL_STATUSES for status in statuses):
                break
            assert time.monotonic() < deadline, collections.Counter(statuses)
            time.sleep(0.5)
    finally:
        stop.set()
        chaos.join()
        producer.close()
        for worker in workers:
            stop_worker(worker)

    counts = collections.Counter(statuses)
    assert set(counts) <= FINAL_STATUSES and sum(counts.values()) == total
    assert store.stats(overdue_after=3)["overdue"] == 0
    wanted = set(ids)
    answered = collections.Counter(
        webhook_id
        for path, webhook_id, code in receiver.answers
        if path == "/flaky/30" and webhook_id in wanted and code == 200
    )
    delivered = [i for i, s in zip(ids, statuses, strict=True) if s is DeliveryStatus.DELIVERED]
    assert all(answered[i] >= 1 for i in delivered)  # each delivered event arrived
    duplicates = sum(n - 1 for n in answered.values())
    assert kills == 6
    assert duplicates <= kills * concurrency, duplicates
    print(
        f"\nchaos on {broker}: {total} deliveries, {counts[DeliveryStatus.DELIVERED]} delivered, "
        f"{counts[DeliveryStatus.RETRIES_EXHAUSTED]} exhausted, {kills} SIGKILLs, "
        f"{duplicates} duplicate 2XX at the receiver (bound {kills * concurrency})"
    )
