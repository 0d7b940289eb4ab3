"""100,000 waiting retries: the worker's memory stays flat, and due ones still go out on time."""

from __future__ import annotations

import time

import pytest

from tests.conftest import WORKER_ENV, database_url, event, own_database
from webhooks.dev.seed import seed_waiting
from webhooks.dev.worker import start_worker, stop_worker, tree_rss_kb
from webhooks.events import parse_event
from webhooks.system import System

SCALE_URL = database_url(12)  # a database of its own, flushed after


@pytest.fixture
def scale_redis(redis_client):
    with own_database(12) as client:
        yield client


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_100k_waiting_retries_keep_worker_memory_flat_and_promotion_on_time(
    scale_redis, receiver, tmp_path
):
    env = {**WORKER_ENV, "WEBHOOKS_REDIS_URL": SCALE_URL}
    worker = start_worker(tmp_path / "scale.log", env, "--concurrency=2")
    try:
        time.sleep(2)
        idle_kb = tree_rss_kb(worker.pid)
        system = System(client=scale_redis)
        store, schedule, parsed = system.deliveries, system.schedule, parse_event(event())
        seed_waiting(store, schedule, parsed, receiver.url("/ok"), 100_000, due=time.time() + 3600)
        assert schedule.waiting() == 100_000

        due = time.time() + 2
        soon = seed_waiting(store, schedule, parsed, receiver.url("/ok"), 20, due=due)
        deadline = time.monotonic() + 20
        while len({r.headers["webhook-id"] for r in receiver.received("/ok")} & set(soon)) < 20:
            assert time.monotonic() < deadline, "due retries were not sent"
            time.sleep(0.02)
        arrivals = [r.at for r in receiver.received("/ok") if r.headers["webhook-id"] in soon]
        assert min(arrivals) >= due - 0.05  # not early
        assert max(arrivals) - due <= 1.0, max(arrivals) - due  # within 1 s of due

        time.sleep(3)  # several promoter passes over the 100,000
        growth_mb = (tree_rss_kb(worker.pid) - idle_kb) / 1024
        assert growth_mb < 50, f"RSS grew {growth_mb:.1f} MB"
        assert schedule.waiting() == 100_000
        print(
            f"\n100,000 parked: worker RSS {idle_kb / 1024:.1f} MB idle, {growth_mb:+.1f} MB; "
            f"20 due retries sent {max(arrivals) - due:.2f} s after due at the latest"
        )
    finally:
        stop_worker(worker)
