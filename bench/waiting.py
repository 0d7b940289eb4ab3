"""What a waiting retry costs: Redis bytes and worker memory per parked delivery.

    python -m bench.waiting [COUNT]      (default 100,000)

Seeds COUNT deliveries whose first attempt failed and whose retry is parked an
hour out (the records a real failure leaves), next to a running worker, in Redis
database 12 of WEBHOOKS_REDIS_URL's server (flushed before and after).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("WEBHOOKS_REDIS_URL", "redis://127.0.0.1:6379/12")

import redis

from bench.scenarios import one_kb_event, procfile_worker
from webhooks.dev.redis_server import ensure_redis
from webhooks.dev.seed import seed_waiting
from webhooks.dev.worker import start_worker, stop_worker, tree_rss_kb
from webhooks.events import parse_event
from webhooks.storage import keys
from webhooks.storage.deliveries import DeliveryStore
from webhooks.storage.schedule import Schedule


def measure(count: int) -> dict[str, float]:
    url = os.environ["WEBHOOKS_REDIS_URL"]
    with ensure_redis(url), tempfile.TemporaryDirectory() as tmp:
        client = redis.Redis.from_url(url)
        client.flushdb()
        worker = start_worker(
            Path(tmp) / "worker.log", {"WEBHOOKS_REDIS_URL": url}, *procfile_worker()
        )
        try:
            time.sleep(2)
            rss_before = tree_rss_kb(worker.pid)
            used_before = int(client.info("memory")["used_memory"])
            started = time.perf_counter()
            seed_waiting(
                DeliveryStore(client, timedelta(days=1)),
                Schedule(client),
                parse_event(one_kb_event()),
                "https://example.com/hook",
                count,
                due=time.time() + 3600,
            )
            seeded = time.perf_counter() - started
            time.sleep(3)  # promoter passes over the parked set
            used = int(client.info("memory")["used_memory"]) - used_before
            schedule = int(client.memory_usage(keys.scheduled()) or 0)
            rss = (tree_rss_kb(worker.pid) - rss_before) * 1024
        finally:
            stop_worker(worker)
            client.flushdb()
    return {
        "count": count,
        "seed_seconds": seeded,
        "schedule_bytes_each": schedule / count,
        "record_bytes_each": used / count,
        "rss_bytes_each": rss / count,
        "rss_mb": rss / 2**20,
    }


def main(count: int) -> None:
    figures = measure(count)
    print(f"{count:,} waiting retries (seeded in {figures['seed_seconds']:.1f} s)")
    print(f"  Redis, parked-retry entry only : {figures['schedule_bytes_each']:8.0f} bytes each")
    print(
        f"  Redis, whole delivery record   : {figures['record_bytes_each']:8.0f} bytes each "
        "(body, one attempt, indexes)"
    )
    print(
        f"  worker RSS                     : {figures['rss_bytes_each']:8.1f} bytes each "
        f"({figures['rss_mb']:+.1f} MB in all)"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
