"""Commit to first attempt through the transactional outbox.

    python -m bench.outbox [--rate 100] [--seconds 10]

A producer commits one event per PostgreSQL transaction (``webhooks.outbox.add``)
at ``--rate`` a second; a worker started with the Procfile's command and
``WEBHOOKS_OUTBOX_DSN`` relays the rows (its relay is woken by each commit's
NOTIFY) and makes the attempts; the benchmarks' asyncio receiver on loopback,
answering at once, notes when each first POST arrives. Printed: p50, p99 and max
of (first POST received - commit returned), on a Redis server of its own and the
database ``webhooks_bench``. ``--relay process`` runs ``webhooks outbox relay``
beside a worker without one instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from bench.receiver import FastReceiver
from webhooks.dev.redis_server import RedisProcess, installed_server
from webhooks.dev.worker import start_worker, stop_worker

PG_ADMIN = os.environ.get("WEBHOOKS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _database() -> str:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        if not admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = 'webhooks_bench'"
        ).fetchone():
            admin.execute("CREATE DATABASE webhooks_bench")
    return PG_ADMIN.rsplit("/", 1)[0] + "/webhooks_bench"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox")
    parser.add_argument("--rate", type=float, default=100.0, help="commits per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--relay",
        choices=["worker", "process"],
        default="worker",
        help="the worker's own relay (WEBHOOKS_OUTBOX_DSN), or `webhooks outbox relay` beside it",
    )
    args = parser.parse_args()
    dsn = _database()
    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisProcess(Path(tmp), binary=installed_server()) as redis_server,
        FastReceiver() as receiver,
    ):
        env = {
            "WEBHOOKS_REDIS_URL": redis_server.url,
            "WEBHOOKS_OUTBOX_DSN": dsn,
            "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
        }
        os.environ.update(env)  # this process's own calls use the same Redis
        # Imported now: the settings are read once, with the environment above.
        from bench.scenarios import one_kb_event, procfile_worker
        from webhooks import outbox
        from webhooks.producer import delivery_id
        from webhooks.system import get_endpoints, get_store, get_tenants

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(outbox.DDL)
            conn.execute("TRUNCATE webhooks_outbox")
        get_tenants().add("acct_bench", "Bench")
        endpoint, _ = get_endpoints().add(receiver.url("/outbox"), tenant="acct_bench")
        # The worker's own relay, or none: an empty DSN is no DSN.
        worker_env = {**env, "WEBHOOKS_OUTBOX_DSN": dsn if args.relay == "worker" else ""}
        worker = start_worker(Path(tmp) / "worker.log", worker_env, *procfile_worker())
        relay = (
            None
            if args.relay == "worker"
            else subprocess.Popen(
                [sys.executable, "-m", "webhooks", "outbox", "relay"], env={**os.environ, **env}
            )
        )
        committed: dict[str, float] = {}
        try:
            count = int(args.rate * args.seconds)
            with psycopg.connect(dsn) as conn:
                start = time.perf_counter()
                for n in range(count):
                    # Paced to the rate: each commit at its own moment, not in bursts.
                    time.sleep(max(0.0, start + n / args.rate - time.perf_counter()))
                    sent = {**one_kb_event(n), "id": f"evt_{uuid.uuid4().hex}"}
                    with conn.transaction():
                        outbox.add(conn, sent, tenant="acct_bench")
                    committed[delivery_id(str(sent["id"]), endpoint.url, endpoint.id)] = time.time()
            deadline = time.monotonic() + 60
            while receiver.count("outbox") < count and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop_worker(worker)
            if relay is not None:
                relay.terminate()
                relay.wait(10)
        first: dict[str, float] = {}
        for at, webhook_id in receiver.stats().get("outbox", []):
            first[webhook_id] = min(first.get(webhook_id, at), at)
        made = {i: get_store().get(i).created_at.timestamp() for i in committed}
    done = [i for i in committed if i in first]
    _print(
        f"commit to first attempt, {len(done):,} of {count:,} events at {args.rate:g}/s",
        [first[i] - committed[i] for i in done],
    )
    _print(
        "  of which the relay (commit to delivery created)", [made[i] - committed[i] for i in done]
    )
    _print("  and the worker (delivery created to first POST)", [first[i] - made[i] for i in done])
    return 0 if len(done) == count else 1


def _print(what: str, seconds: list[float]) -> None:
    cuts = statistics.quantiles([s * 1000 for s in seconds], n=100)
    print(f"{what}: p50 {cuts[49]:.1f} ms, p99 {cuts[98]:.1f} ms, max {max(seconds) * 1000:.1f} ms")


if __name__ == "__main__":
    raise SystemExit(main())
