"""End-to-end throughput on each broker: Redis (the default) and RabbitMQ.

    python -m bench.brokers --broker redis|amqp [--count 3000] [--json]

One broker per process (the settings are read once per process): deliver_many
of ``--count`` 1 KB events to the benchmarks' asyncio receiver, a worker started
with the Procfile's command, deliveries per second until the last one arrives.
The store is the Redis of WEBHOOKS_REDIS_URL either way; with ``amqp`` the
broker is WEBHOOKS_BENCH_AMQP (the machine's RabbitMQ by default), and the run's
queue has a name of its own. `python -m bench` runs both as scenario (j).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

AMQP = os.environ.get("WEBHOOKS_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672//")


def measure(broker: str, count: int) -> float:
    prefix = f"bench-{broker}-{uuid.uuid4().hex[:6]}"  # its own queue and keys
    env = {
        "WEBHOOKS_KEY_PREFIX": prefix,
        "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
        **({"WEBHOOKS_BROKER_URL": AMQP} if broker == "amqp" else {}),
    }
    os.environ.update(env)
    # Imported now: the default System is built from the environment above.
    import redis

    from bench.receiver import FastReceiver
    from bench.scenarios import one_kb_event, procfile_worker
    from webhooks import deliver_many
    from webhooks.dev.worker import kill_worker, start_worker

    store = redis.Redis.from_url(os.environ["WEBHOOKS_REDIS_URL"])
    with tempfile.TemporaryDirectory() as tmp, FastReceiver() as rx:
        # A node name of its own: on RabbitMQ a worker's control queue is exclusive to
        # its name, and another worker named celery@host (another run's) would stop it.
        worker = start_worker(
            Path(tmp) / "worker.log", env, *procfile_worker(), f"--hostname={prefix}@%h"
        )
        try:
            start = time.perf_counter()
            deliver_many([(rx.url("/j"), one_kb_event(n)) for n in range(count)])
            deadline = start + 120
            while rx.count("j") < count and time.perf_counter() < deadline:
                time.sleep(0.02)
            rate = rx.count("j") / (time.perf_counter() - start)
        finally:
            kill_worker(worker)
            for key in store.scan_iter(f"{prefix}:*"):
                store.delete(key)
    if broker == "amqp":
        from kombu import Connection

        with Connection(AMQP) as connection:
            channel: Any = connection.default_channel  # kombu types it as the abstract channel
            channel.queue_delete(prefix)
            channel.exchange_delete(prefix)
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.brokers")
    parser.add_argument("--broker", choices=["redis", "amqp"], required=True)
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--json", action="store_true", help="print the rate as JSON")
    args = parser.parse_args()
    rate = measure(args.broker, args.count)
    print(
        json.dumps({"rate": rate})
        if args.json
        else f"{args.broker}: {rate:,.1f} deliveries/s end to end ({args.count:,})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
