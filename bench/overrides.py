"""Whether each Celery/kombu override still pays, measured against going without it.

    python -m bench.overrides [--count 3000]

- **The Redis transport's one client per pool** (webhooks/broker/transport.py):
  CPU per message of a solo-pool worker with our transport, then with kombu's
  own, each running ``deliver`` for ids that have no record (the claim answers
  ``missing``: the Celery cost per message, plus one Redis call).
- **The bulk envelope** (webhooks/broker/messages.py): messages published per
  second by one LPUSH of envelopes built here, against Celery's ``send_task``
  pipelined in one kombu batch (what other brokers get).

Uses Redis database 14 of WEBHOOKS_REDIS_URL's server (flushed before and after).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WEBHOOKS_REDIS_URL", "redis://127.0.0.1:6379/14")

import redis

from bench.profile import cpu_seconds
from webhooks import app
from webhooks.broker import messages
from webhooks.broker.app import DELIVER
from webhooks.dev.redis_server import ensure_redis
from webhooks.dev.worker import start_worker, stop_worker
from webhooks.models import Run

QUEUE = "bench-overrides"


def worker_cpu_per_message(client: redis.Redis, count: int, kombu_transport: bool) -> float:
    """Milliseconds of worker CPU per message, with our transport or kombu's."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {}
        if kombu_transport:
            (Path(tmp) / "kombu_transport_config.py").write_text(
                "from webhooks.broker.config import *  # noqa: F403\nbroker_transport = None\n"
            )
            env = {
                "CELERY_CONFIG_MODULE": "kombu_transport_config",
                "PYTHONPATH": os.pathsep.join([tmp, os.getcwd()]),
            }
        worker = start_worker(Path(tmp) / "worker.log", env, "--pool=solo", "-Q", QUEUE)
        try:
            time.sleep(1)
            before = cpu_seconds(worker.pid)
            messages.publish(app, [Run(f"bench-none-{n}") for n in range(count)], QUEUE)
            while client.llen(QUEUE) or client.hlen("unacked"):
                time.sleep(0.05)
            return (cpu_seconds(worker.pid) - before) * 1000 / count
        finally:
            stop_worker(worker)


def publish_rates(client: redis.Redis, count: int) -> tuple[float, float]:
    """Messages per second: our one-LPUSH envelopes, and Celery's send_task in a batch."""
    runs = [Run(f"bench-rate-{n}") for n in range(count)]
    start = time.perf_counter()
    messages.publish(app, runs, QUEUE)
    ours = count / (time.perf_counter() - start)
    client.delete(QUEUE)
    start = time.perf_counter()
    with app.producer_or_acquire() as producer, producer.batch(max_size=2 * count + 1):
        for run in runs:
            app.send_task(
                DELIVER,
                args=(run.delivery_id,),
                kwargs={"cycle": 0},
                task_id=run.delivery_id,
                queue=QUEUE,
                producer=producer,
                ignore_result=True,
                add_to_parent=False,
            )
    celery = count / (time.perf_counter() - start)
    client.delete(QUEUE)
    return ours, celery


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.overrides")
    parser.add_argument("--count", type=int, default=3000)
    count = parser.parse_args().count
    url = os.environ["WEBHOOKS_REDIS_URL"]
    with ensure_redis(url):
        client = redis.Redis.from_url(url)
        client.flushdb()
        try:
            ours, celery = publish_rates(client, count)
            print(
                f"publish {count:,} messages: bulk envelope {ours:,.0f}/s, "
                f"send_task batch {celery:,.0f}/s ({ours / celery:.1f}x)"
            )
            with_ours = worker_cpu_per_message(client, count, kombu_transport=False)
            with_kombu = worker_cpu_per_message(client, count, kombu_transport=True)
            print(
                f"worker CPU per message: our transport {with_ours:.3f} ms, kombu's "
                f"{with_kombu:.3f} ms ({with_kombu / with_ours:.2f}x)"
            )
        finally:
            client.flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
