"""The archive (issue 22): what finished deliveries cost Redis once they move to
PostgreSQL, what archiving costs delivery, how fast the archiver moves them, and
how the archive's reads hold up at 10 million deliveries.

    python -m bench.archive [--size tiny|full] [--parts moves,archiver,scale]
                            [--rows N] [--keep] [--reuse]

Three parts, each printing its figures (a benchmark reports; it decides nothing):

moves     Deliveries through real worker processes (the Procfile's command) to the
          benchmarks' asyncio receiver on loopback, on a Redis server of this run's
          own with no persistence, in turns with the archive off, on, on, off
          (WEBHOOKS_ARCHIVE_AFTER_SECONDS=1 when on, so that the workers' archivers
          move deliveries while others are being delivered). Each turn: Redis
          ``used_memory`` before publishing and after every delivery is finished
          (off) or archived (on), per delivery; the throughput from deliver_many to
          the last POST received; PostgreSQL's bytes per delivery (Archive.size()).
archiver  The archiver alone: finished deliveries seeded in Redis (create_many,
          then record_attempt, as the worker records them), then Archiver.run_once()
          in a loop until the backlog is empty, at WEBHOOKS_ARCHIVE_BATCH 1000 and
          5000, and two archivers at once (two processes, as two workers run them);
          the time in each step (take, write, forget), the CPU of the archiver, Redis
          and PostgreSQL, and the longest Redis command (the slow log).
scale     ``--rows`` archived deliveries (10 million at full size) written straight
          into the tables with COPY, spread over 90 days of partitions made by
          Archive._ensure_days, then VACUUM ANALYZE; the EXPLAIN ANALYZE of each read
          (auto_explain, so that the plans are those of the product's own queries),
          then p50 and p99 of 200 random calls each through the product's code
          paths: the calls the HTTP API makes on the store (DeliveryStore.listing: a
          page of 50 by tenant, or by tenant and status, read through Archive.entries
          then Archive.summaries; DeliveryStore.by_event; DeliveryStore.load), with an
          empty Redis tier of its own, and the mean time in each of those parts.

The databases are ``webhooks_bench_archive`` (moves, archiver) and
``webhooks_bench_archive_scale`` (scale), made and dropped here; ``--keep`` keeps
the scale database and ``--reuse`` measures one kept with the same ``--rows``.
PostgreSQL is WEBHOOKS_BENCH_PG's server (postgres@127.0.0.1:5432 by default).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ["WEBHOOKS_ALLOWED_NETWORKS"] = "127.0.0.0/8"  # the receiver is on loopback

import psycopg
import redis
from psycopg import sql

from bench.receiver import FastReceiver
from bench.scenarios import procfile_worker
from webhooks.archive.store import Archive
from webhooks.dev.redis_server import installed_server, redis_answers
from webhooks.dev.server import free_port
from webhooks.dev.worker import start_worker, stop_worker
from webhooks.events import encode, load_event_modules, parse_event
from webhooks.models import (
    Attempt,
    AttemptError,
    DeliveryStatus,
    ErrorKind,
    Run,
)
from webhooks.producer import Producer, delivery_id, new_delivery
from webhooks.settings import Settings
from webhooks.storage.deliveries import DeliveryStore
from webhooks.system import System
from webhooks.worker.archiver import Archiver

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("WEBHOOKS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MOVES_DB = "webhooks_bench_archive"
SCALE_DB = "webhooks_bench_archive_scale"

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "deliveries": 200,
        "rounds": 1,
        "seeded": 2000,
        "rows": 20_000,
        "tenants": 40,
        "queries": 20,
    },
    "full": {
        "deliveries": 10_000,
        "rounds": 2,
        "seeded": 50_000,
        "rows": 10_000_000,
        "tenants": 500,
        "queries": 200,
    },
}
#: With the archive on, a finished delivery moves this long after its final attempt.
AFTER_SECONDS = 1.0
#: Deliveries made and settled before each turn's "before" reading: the scripts are
#: loaded, the queues and counters exist, so that only the turn's deliveries count.
WARM_UP = 100
DAYS = 90


def event(number: int) -> dict[str, Any]:
    """A valid screenshot_set.approved event with one screenshot: 400 bytes or so
    encoded (the smallest valid one is 371)."""
    return {
        "id": f"evt_{number:016d}",
        "type": "screenshot_set.approved",
        "created_at": "2026-11-26T10:00:00Z",
        "data": {
            "screenshot_set": {
                "id": f"set_{number}",
                "screenshots": [
                    {
                        "id": "shot_1",
                        "status": "uploaded",
                        "download_url": f"https://cdn.example.com/{number}/1.png",
                        "ad": {"id": "ad_5", "status": "uploaded"},
                    }
                ],
            }
        },
    }


def body_size() -> int:
    return len(encode(parse_event(event(10**9))))


# --- Servers of this run's own ----------------------------------------------------------


@contextmanager
def own_redis(binary: str) -> Iterator[str]:
    """A Redis server on a free port, no RDB, no AOF; yields its URL."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryDirectory(prefix="bench-archive-redis-") as workdir:
        server = subprocess.Popen(
            [
                *(binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
                *("--appendonly", "no", "--dir", workdir, "--daemonize", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while not redis_answers(url):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{binary} did not start on port {port}")
                time.sleep(0.05)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=20)


def _dsn(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def create_database(name: str) -> str:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _dsn(name)


def drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def database_exists(name: str) -> bool:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        return bool(
            admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        )


# --- Small helpers ---------------------------------------------------------------------


def code_state() -> str:
    """The commit measured, and the package's files changed since it (others may be
    working in the same tree); WEBHOOKS_BENCH_CODE says it for a tree without git."""
    if named := os.environ.get("WEBHOOKS_BENCH_CODE"):
        return named
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "webhooks"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.split("\n")
    except OSError:
        return "unknown"
    changed = [line[3:] for line in dirty if line.strip()]
    return head + (f" with uncommitted changes to {', '.join(changed)}" if changed else "")


def used_memory(client: redis.Redis, samples: int = 5) -> int:
    """Redis ``used_memory``: the median of a few readings 0.2 s apart (the idle
    workers' polls move it by a few hundred bytes)."""
    readings = []
    for _ in range(samples):
        readings.append(int(client.info("memory")["used_memory"]))
        time.sleep(0.2)
    return int(statistics.median(readings))


def memory_parts(client: redis.Redis) -> dict[str, int]:
    """Where ``used_memory`` is, as INFO memory splits it."""
    info = client.info("memory")
    names = ("used_memory_dataset", "used_memory_overhead", "mem_clients_normal")
    return {name: int(info[name]) for name in names if name in info} | {
        "used_memory_scripts": int(info.get("used_memory_scripts", 0))
    }


def key_families(client: redis.Redis) -> list[tuple[str, int, int]]:
    """Every key, grouped by its name with ids taken out: (family, keys, bytes by
    MEMORY USAGE), biggest first."""
    names = [key.decode() for key in client.scan_iter(count=1000)]
    sizes: list[int] = []
    for first in range(0, len(names), 1000):
        with client.pipeline(transaction=False) as pipe:
            for name in names[first : first + 1000]:
                pipe.memory_usage(name, samples=0)
            sizes += [int(size or 0) for size in pipe.execute()]
    families: dict[str, list[int]] = {}
    for name, size in zip(names, sizes, strict=True):
        family = re.sub(
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "{id}", name
        )
        family = re.sub(r"\b[0-9a-f]{40}\b", "{sha1}", family)
        family = re.sub(r"\d+", "{n}", family)
        entry = families.setdefault(family, [0, 0])
        entry[0] += 1
        entry[1] += size
    return sorted(((f, n, b) for f, (n, b) in families.items()), key=lambda r: -r[2])


def _wait(check: Callable[[], bool], cap: float, what: str) -> float:
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > cap:
            raise RuntimeError(f"gave up after {cap:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.perf_counter() - start


def _quantile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# --- Part 1: deliveries through workers, archive off and on -----------------------------


def moves(redis_url: str, dsn: str, rx: FastReceiver, count: int, rounds: int) -> dict[str, Any]:
    """Turns off, on, on, off (``rounds`` times) of ``count`` deliveries each, on one
    Redis and one archive: drift in the machine's load weighs on both sides alike."""
    archive = Archive(dsn, 90 * 86400)
    archive.init()
    turns = []
    try:
        for number, on in enumerate((False, True, True, False) * rounds):
            turns.append(_turn(redis_url, dsn, archive, rx, on, count, f"m{number}"))
            row = turns[-1]
            print(
                f"  turn {number + 1} (archive {'on' if on else 'off'}): "
                f"{row['rate']:,.1f} deliveries/s, Redis {row['redis_bytes_each']:,.0f} B "
                f"per delivery after all were {'archived' if on else 'finished'}"
                + (f", PostgreSQL {row['pg_bytes_each']:,.0f} B" if on else "")
                + "; CPU ms per delivery: "
                + ", ".join(f"{k} {v:.2f}" for k, v in row["cpu_ms_each"].items()),
                flush=True,
            )
    finally:
        archive.close()
    on_rates = [t["rate"] for t in turns if t["archive"]]
    off_rates = [t["rate"] for t in turns if not t["archive"]]
    return {
        "count": count,
        "body_bytes": body_size(),
        "turns": turns,
        "rate_on": statistics.median(on_rates),
        "rate_off": statistics.median(off_rates),
        "ratio": statistics.median(on_rates) / statistics.median(off_rates),
        "redis_bytes_on": statistics.median([t["redis_bytes_each"] for t in turns if t["archive"]]),
        "redis_bytes_off": statistics.median(
            [t["redis_bytes_each"] for t in turns if not t["archive"]]
        ),
        "cpu_ms_each_on": {
            k: statistics.median([t["cpu_ms_each"][k] for t in turns if t["archive"]])
            for k in turns[0]["cpu_ms_each"]
        },
        "cpu_ms_each_off": {
            k: statistics.median([t["cpu_ms_each"][k] for t in turns if not t["archive"]])
            for k in turns[0]["cpu_ms_each"]
        },
    }


def _turn(
    redis_url: str, dsn: str, archive: Archive, rx: FastReceiver, on: bool, count: int, label: str
) -> dict[str, Any]:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    # The producer's settings are the worker's: with the archive, publishing also
    # looks for the idempotency markers of archived deliveries.
    settings = Settings(
        redis_url=redis_url,
        archive_dsn=dsn if on else None,
        archive_after_seconds=AFTER_SECONDS,
    )
    system = System(settings)
    producer = Producer(system)
    store = system.deliveries
    env = {
        "WEBHOOKS_REDIS_URL": redis_url,
        "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
        "WEBHOOKS_ARCHIVE_DSN": dsn if on else "",
        "WEBHOOKS_ARCHIVE_AFTER_SECONDS": str(AFTER_SECONDS),
    }
    delivered = system.keys.deliveries(DeliveryStatus.DELIVERED)

    def settled(total: int) -> bool:
        if on:
            return store.archive_backlog() == 0 and sum(archive.counts(None).values()) >= total
        return int(client.zcard(delivered)) >= total

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "worker.log"
        worker = start_worker(log, env, *procfile_worker())
        try:
            archived_before = sum(archive.counts(None).values()) if on else 0
            producer.deliver_many(
                [(rx.url(f"/{label}w"), event(10**8 + n)) for n in range(WARM_UP)]
            )
            _wait(lambda: rx.count(f"{label}w") >= WARM_UP, 60, "the warm-up")
            _wait(lambda: settled(archived_before + WARM_UP), 60, "the warm-up to settle")
            # Idle for 3 s first: Redis shrinks the clients' query buffers after 2 s idle.
            time.sleep(3.0)
            memory_before = used_memory(client)
            parts_before = memory_parts(client)
            size_before = archive.size() if on else {}
            cpu_before = _cpu(worker.pid, client, dsn)
            start = time.perf_counter()
            producer.deliver_many([(rx.url(f"/{label}"), event(n)) for n in range(count)])
            published = time.perf_counter() - start
            _wait(lambda: rx.count(label) >= count, 600, f"{count} deliveries")
            elapsed = time.perf_counter() - start
            _wait(lambda: settled(archived_before + WARM_UP + count), 300, "every one to settle")
            settled_after = time.perf_counter() - start
            cpu_after = _cpu(worker.pid, client, dsn)
            time.sleep(3.0)
            memory_after = used_memory(client)
            parts_after = memory_parts(client)
            families = key_families(client)
            size_after = archive.size() if on else {}
        finally:
            stop_worker(worker)
        problems = [
            line
            for line in log.read_text(errors="replace").splitlines()
            if "archive:" in line or "Traceback" in line or "ERROR" in line
        ]
    system.close()
    client.close()
    row: dict[str, Any] = {
        "archive": on,
        "rate": count / elapsed,
        "publish_seconds": round(published, 2),
        "seconds": round(elapsed, 2),
        "settled_seconds": round(settled_after, 2),
        "used_memory_before": memory_before,
        "used_memory_after": memory_after,
        "memory_parts_grown_each": {
            name: (parts_after[name] - parts_before[name]) / count for name in parts_after
        },
        "redis_bytes_each": (memory_after - memory_before) / count,
        # from publishing until every delivery was finished (off) or archived (on)
        "cpu_ms_each": {
            "worker": 1000 * (cpu_after["worker"] - cpu_before["worker"]) / count,
            "redis": 1000 * (cpu_after["redis"] - cpu_before["redis"]) / count,
            "postgresql": 1000
            * sum(
                v - cpu_before["postgresql"].get(k, 0.0) for k, v in cpu_after["postgresql"].items()
            )
            / count,
        },
        "keys": [{"family": f, "keys": n, "bytes": b} for f, n, b in families[:12] if b > 0],
        "worker_log_problems": problems[:20],
    }
    if on:
        grown = {name: size_after[name] - size_before[name] for name in size_after}
        row["pg_sizes_after"] = size_after
        row["pg_grown"] = grown
        on_disk = sum(v for k, v in grown.items() if k != "deliveries")
        row["pg_bytes_each"] = on_disk / count
    return row


def _cpu(worker: int, client: redis.Redis, dsn: str) -> dict[str, Any]:
    """CPU seconds so far of the worker (its main process and its pool), of Redis, and
    of each PostgreSQL backend connected to the archive's database."""
    name = dsn.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        pids = [
            int(pid)
            for (pid,) in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)
            )
        ]
    return {
        "worker": _tree_cpu(worker),
        "redis": _redis_cpu(client),
        "postgresql": {pid: _backend_cpu(pid) for pid in pids},
    }


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its descendants (the worker's prefork pool)."""
    total = _backend_cpu(pid)
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += _tree_cpu(int(child))
    except OSError:
        pass
    return total


# --- Part 2: the archiver alone ------------------------------------------------------------


def seed_finished(system: System, count: int, tenants: int = 20, seed: int = 7) -> Counter[str]:
    """``count`` finished deliveries of ``tenants`` tenants (2 endpoints each) in Redis,
    recorded as a worker records them: 85 % delivered at once, 10 % after one
    failure, 5 % retries_exhausted after 15 failures. No message is queued."""
    rng = random.Random(seed)
    store = system.deliveries
    moment = datetime.now(UTC)
    ok = Attempt(
        number=1,
        started_at=moment,
        duration_ms=12.0,
        status_code=200,
        error=None,
        response_body="ok",
    )
    failed = Attempt(
        number=1,
        started_at=moment,
        duration_ms=30.0,
        status_code=503,
        error=AttemptError(kind=ErrorKind.HTTP_STATUS, message="HTTP 503"),
        response_body="busy",
    )
    endpoints = []
    for t in range(tenants):
        tenant = f"acct_bench_{t:03d}"
        system.tenants.add(tenant, f"Bench {t}")
        for e in range(2):
            endpoint, _ = system.endpoints.add(f"http://127.0.0.1:9/hooks/{t}/{e}", tenant=tenant)
            endpoints.append((tenant, endpoint.id, endpoint.url))
    made: Counter[str] = Counter()
    number = 0
    per_call = 500
    while number < count:
        tenant, endpoint_id, url = endpoints[(number // per_call) % len(endpoints)]
        size = min(per_call, count - number)
        parsed = [parse_event(event(2 * 10**8 + number + n)) for n in range(size)]
        deliveries = [
            new_delivery(p, url, endpoint_id, created=moment, tenant_id=tenant) for p in parsed
        ]
        store.create_many(deliveries, [encode(p) for p in parsed])
        for delivery in deliveries:
            roll = rng.random()
            failures = 0 if roll < 0.85 else 1 if roll < 0.95 else 15
            for n in range(1, failures + 1):
                final = n == 15
                status = DeliveryStatus.RETRIES_EXHAUSTED if final else DeliveryStatus.RETRYING
                store.record_attempt(
                    Run(delivery.id, 0, n - 1),
                    failed.model_copy(update={"number": n}),
                    status,
                    tenant_id=tenant,
                )
            if failures < 15:
                store.record_attempt(
                    Run(delivery.id, 0, failures),
                    ok.model_copy(update={"number": failures + 1}),
                    DeliveryStatus.DELIVERED,
                    tenant_id=tenant,
                )
            made["delivered" if failures < 15 else "retries_exhausted"] += 1
            made["attempts"] += failures + (failures < 15)
        number += size
    return made


class _Timed:
    """Wraps one method of one object (an instance attribute over the class's), adding
    up the seconds spent in it."""

    def __init__(self, owner: object, name: str) -> None:
        self.seconds = 0.0
        self.calls = 0
        real = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        setattr(owner, name, timed)


def archiver_rate(
    redis_url: str, dsn: str, count: int, batch: int, archivers: int = 1
) -> dict[str, Any]:
    """Seconds for Archiver.run_once() in a loop to move ``count`` seeded deliveries;
    with ``archivers`` > 1, that many processes at once, as that many workers run them.
    CPU seconds of each side: the archiver's process, Redis, its PostgreSQL backend."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE webhooks_deliveries, webhooks_attempts, webhooks_archive_counts")
    settings = Settings(
        redis_url=redis_url, archive_dsn=dsn, archive_after_seconds=0, archive_batch=batch
    )
    system = System(settings)
    assert system.archive is not None
    started = time.perf_counter()
    made = seed_finished(system, count)
    seeded = time.perf_counter() - started
    backlog = system.deliveries.archive_backlog()
    memory_full = int(client.info("memory")["used_memory"])
    redis_cpu = _redis_cpu(client)
    # Redis runs one command (a Lua script whole) at a time: how long the archiver's
    # longest held it, from the slow log (every command over 1 ms).
    client.config_set("slowlog-log-slower-than", 1000)
    client.config_set("slowlog-max-len", 10000)
    client.slowlog_reset()
    if archivers == 1:
        figures = _archive_all(settings, None)
    else:
        context = multiprocessing.get_context("fork")
        go, out = context.Event(), context.Queue()
        children = [
            context.Process(target=_archive_into, args=(settings, go, out))
            for _ in range(archivers)
        ]
        for child in children:
            child.start()
        time.sleep(2.0)  # each has made its System and connections
        go.set()
        results = [out.get(timeout=600) for _ in children]
        for child in children:
            child.join(30)
        figures = {
            "seconds": max(r["seconds"] for r in results),
            "moved": sum(r["moved"] for r in results),
            "rounds": sum(r["rounds"] for r in results),
            "cpu": {k: sum(r["cpu"][k] for r in results) for k in results[0]["cpu"]},
            "steps": {
                k: sum(r["steps"][k] for r in results) / archivers for k in results[0]["steps"]
            },
        }
    redis_cpu = _redis_cpu(client) - redis_cpu
    slow = sorted(client.slowlog_get(10000), key=lambda entry: -int(entry["duration"]))
    longest = int(slow[0]["duration"]) if slow else 0
    # EVALSHA sha numkeys first_key ...: the script's first key says which it was
    longest_what = " ".join(
        str(part, "utf-8", "replace") if isinstance(part, bytes) else str(part)
        for part in (slow[0]["command"].split()[3:4] if slow else [])
    )
    left = system.deliveries.archive_backlog()
    archived = sum(system.archive.counts(None).values())
    memory_empty = int(client.info("memory")["used_memory"])
    sizes = system.archive.size()
    system.close()
    client.close()
    per_1000 = 1000 / count
    return {
        "batch": batch,
        "archivers": archivers,
        "count": count,
        "seeded": dict(made),
        "seed_seconds": round(seeded, 1),
        "backlog_before": backlog,
        "backlog_after": left,
        "archived": archived,
        "rounds": figures["rounds"],
        "seconds": figures["seconds"],
        "rate": figures["moved"] / figures["seconds"],
        # wall-clock ms per 1,000 deliveries in each step (the mean over archivers)
        "step_ms_per_1000": {k: 1000 * v * per_1000 for k, v in figures["steps"].items()},
        # CPU ms per 1,000 deliveries: the archiver processes, Redis, PostgreSQL backends
        "cpu_ms_per_1000": {
            "archiver": 1000 * figures["cpu"]["archiver"] * per_1000,
            "redis": 1000 * redis_cpu * per_1000,
            "postgresql": 1000 * figures["cpu"]["postgresql"] * per_1000,
        },
        "redis_bytes_freed_each": (memory_full - memory_empty) / count,
        "redis_longest_command_ms": longest / 1000,
        "redis_longest_command_first_key": longest_what,
        "pg_sizes": sizes,
    }


def _backend_cpu(pid: int) -> float:
    """CPU seconds of a process on this machine (a PostgreSQL backend), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _archive_into(settings: Settings, go: Any, out: Any) -> None:
    out.put(_archive_all(settings, go))


def _archive_all(settings: Settings, go: Any) -> dict[str, Any]:
    """One archiver's loop until nothing is left to take (in this process, or a forked one
    once ``go`` is set)."""
    system = System(settings)
    assert system.archive is not None
    archiver = Archiver(system)
    steps = {
        "take": _Timed(system.deliveries, "take_archivable"),
        "write": _Timed(system.archive, "write"),
        "forget": _Timed(system.deliveries, "forget_archived"),
    }
    # Every connection its pool may use (all it may hold, opened at once), so that the
    # CPU of each backend that serves it is counted.
    with ExitStack() as held:
        conns = [held.enter_context(system.archive.connection()) for _ in range(4)]
        pids = [int((c.execute("SELECT pg_backend_pid()").fetchone() or (0,))[0]) for c in conns]
    if go is not None:
        go.wait(60)
    pg_cpu, own_cpu = sum(map(_backend_cpu, pids)), time.process_time()
    start = time.perf_counter()
    rounds = 0
    while archiver.run_once():
        rounds += 1
    elapsed = time.perf_counter() - start
    cpu = {
        "archiver": time.process_time() - own_cpu,
        "postgresql": sum(map(_backend_cpu, pids)) - pg_cpu,
    }
    system.close()
    return {
        "seconds": elapsed,
        "moved": archiver.moved,
        "rounds": rounds,
        "cpu": cpu,
        "steps": {name: timer.seconds for name, timer in steps.items()},
    }


def _redis_cpu(client: redis.Redis) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


# --- Part 3: 10 million archived deliveries -----------------------------------------------

_DELIVERY_COLUMNS = (
    "id, created_at, updated_at, tenant_id, endpoint_id, event_id, event_type, url, status, "
    "stop_reason, cycle, cycle_offset, queue, attempt_count, body"
)
#: The retry schedule's waits (README): attempt n+1 starts this long after attempt 1.
_ELAPSED = [0.0]
for _n in range(14):
    _ELAPSED.append(_ELAPSED[-1] + 5.27 * 2**_n)


def _stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="microseconds")


def _json_stamp(moment: float) -> str:
    return _stamp(moment).replace("+00:00", "Z")


def _attempt_json(number: int, started: float, ok: bool, rng: random.Random) -> str:
    """An attempt as Attempt.model_dump_json() writes it."""
    if ok:
        return (
            f'{{"number":{number},"started_at":"{_json_stamp(started)}",'
            f'"duration_ms":{rng.uniform(5, 400):.1f},"status_code":200,"error":null,'
            '"response_body":"{\\\\"ok\\\\":true}"}'
        )
    return (
        f'{{"number":{number},"started_at":"{_json_stamp(started)}",'
        f'"duration_ms":{rng.uniform(20, 15000):.1f},"status_code":503,'
        '"error":{"kind":"http_status","message":"HTTP 503"},'
        '"response_body":"<html><body>Service Unavailable</body></html>"}'
    )


class Generator:
    """Archived deliveries as the archiver leaves them, written with COPY, day by day
    in creation order (as they arrive), into partitions Archive._ensure_days makes.

    Several hundred tenants of very different sizes (weights 1/rank^0.9), 1-4
    endpoints each, one in ten of them flaky; each event goes to every endpoint of
    its tenant, so an event id is shared by 1-4 deliveries. Healthy endpoints:
    97 % delivered at once, 2.5 % after a failure, 0.5 % retries_exhausted after 15
    attempts over 24 h; flaky ones: 70 %, 20 % after 1-2 failures, 10 %.
    """

    def __init__(self, dsn: str, rows: int, tenants: int, seed: int = 22) -> None:
        self.dsn = dsn
        self.rows = rows
        self.rng = random.Random(seed)
        self.tenants = [f"acct_{n:04d}" for n in range(tenants)]
        weights = [1 / (rank + 1) ** 0.9 for rank in range(tenants)]
        self.cumulative = [sum(weights[: n + 1]) for n in range(tenants)]
        self.endpoints: dict[str, list[tuple[str, str, bool]]] = {}
        for tenant in self.tenants:
            self.endpoints[tenant] = [
                (
                    "ep_" + uuid.UUID(int=self.rng.getrandbits(128)).hex[:24],
                    f"https://hooks.{tenant.replace('_', '-')}.example.com/webhooks/{e}",
                    self.rng.random() < 0.1,
                )
                for e in range(self.rng.randint(1, 4))
            ]
        template = encode(parse_event(event(0)))
        self.body_head, _, self.body_tail = template.partition(b"0" * 16)
        self.counts: Counter[tuple[date, str, str]] = Counter()
        self.sample: list[tuple[str, datetime, str, str, str]] = []
        self.attempts = 0
        self.events = 0
        self.written = 0

    def _outcome(self, flaky: bool) -> int:
        """Failures before the delivery ends: 15 means retries_exhausted."""
        roll = self.rng.random()
        if flaky:
            return 0 if roll < 0.7 else self.rng.randint(1, 2) if roll < 0.9 else 15
        return 0 if roll < 0.97 else 1 if roll < 0.995 else 15

    def day(self, day: date, count: int) -> tuple[str, str]:
        """One day's deliveries and attempts, as COPY text."""
        start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
        deliveries: list[str] = []
        attempts: list[str] = []
        every = max(1, self.rows // 5000)  # about 5,000 sampled, for the reads
        while len(deliveries) < count:
            tenant = self.rng.choices(self.tenants, cum_weights=self.cumulative)[0]
            created = start + 86400 * len(deliveries) / count + self.rng.random() * 0.5
            self.events += 1
            event_id = f"evt_{self.events:016x}"
            body = (self.body_head + event_id[4:].encode() + self.body_tail).hex()
            created_text = _stamp(created)
            for endpoint_id, url, flaky in self.endpoints[tenant]:
                failures = self._outcome(flaky)
                exhausted = failures == 15
                number = failures if exhausted else failures + 1
                status = "retries_exhausted" if exhausted else "delivered"
                started = [created + 0.01 + _ELAPSED[n] for n in range(number)]
                identifier = delivery_id(event_id, url, endpoint_id)
                deliveries.append(
                    f"{identifier}\t{created_text}\t{_stamp(started[-1] + 0.4)}\t{tenant}\t"
                    f"{endpoint_id}\t{event_id}\tscreenshot_set.approved\t{url}\t{status}\t"
                    f"\\N\t0\t0\t\\N\t{number}\t\\\\x{body}\n"
                )
                for n in range(number):
                    ok = n == number - 1 and not exhausted
                    attempts.append(
                        f"{identifier}\t{created_text}\t{n + 1}\t"
                        f"{_attempt_json(n + 1, started[n], ok, self.rng)}\n"
                    )
                self.attempts += number
                self.written += 1
                self.counts[(day, tenant, status)] += 1
                if self.written % every == 0:
                    moment = datetime.fromtimestamp(created, UTC)
                    self.sample.append((identifier, moment, tenant, event_id, status))
        return "".join(deliveries), "".join(attempts)

    def run(self) -> dict[str, Any]:
        archive = Archive(self.dsn, (DAYS + 2) * 86400)
        archive.init()
        today = datetime.now(UTC).date()
        days = [today - timedelta(days=DAYS - n) for n in range(DAYS)]  # the last 90, not today
        archive._ensure_days(set(days))
        archive.close()
        per_day = [self.rows // DAYS + (1 if n < self.rows % DAYS else 0) for n in range(DAYS)]
        started = time.perf_counter()
        # COPY in a thread of its own (two connections, one per table), while this
        # thread makes the next day: PostgreSQL and Python each keep a core busy.
        with (
            psycopg.connect(self.dsn, autocommit=True) as d_conn,
            psycopg.connect(self.dsn, autocommit=True) as a_conn,
            ThreadPoolExecutor(max_workers=2) as copier,
        ):
            pending: list[Any] = []
            for number, (day, count) in enumerate(zip(days, per_day, strict=True)):
                deliveries, attempts = self.day(day, count)
                for future in pending:
                    future.result()
                pending = [
                    copier.submit(
                        _copy,
                        d_conn,
                        f"COPY webhooks_deliveries ({_DELIVERY_COLUMNS}) FROM STDIN",
                        deliveries,
                    ),
                    copier.submit(
                        _copy,
                        a_conn,
                        "COPY webhooks_attempts (delivery_id, created_at, number, attempt) "
                        "FROM STDIN",
                        attempts,
                    ),
                ]
                if number % 10 == 9:
                    done = sum(per_day[: number + 1])
                    print(
                        f"  {done:,} deliveries written ({time.perf_counter() - started:.0f} s)",
                        flush=True,
                    )
            for future in pending:
                future.result()
            with d_conn.cursor() as cursor:
                with cursor.copy(
                    "COPY webhooks_archive_counts (day, tenant_id, status, count) FROM STDIN"
                ) as copy:
                    for (day, tenant, status), n in self.counts.items():
                        copy.write_row((day, tenant, status, n))
                cursor.execute(
                    'CREATE TABLE bench_sample (id text COLLATE "C", created_at timestamptz, '
                    "tenant_id text, event_id text, status text)"
                )
                with cursor.copy("COPY bench_sample FROM STDIN") as copy:
                    for item in self.sample:
                        copy.write_row(item)
                cursor.execute(
                    "CREATE TABLE bench_meta (rows bigint, attempts bigint, events bigint)"
                )
                cursor.execute(
                    "INSERT INTO bench_meta VALUES (%s, %s, %s)",
                    (sum(per_day), self.attempts, self.events),
                )
        written = time.perf_counter() - started
        started = time.perf_counter()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) webhooks_deliveries")
            conn.execute("VACUUM (ANALYZE) webhooks_attempts")
            conn.execute("ANALYZE webhooks_archive_counts")
        analyzed = time.perf_counter() - started
        return {
            # A day ends with its last event's whole fan-out: a few more than asked.
            "rows": self.written,
            "rows_asked": sum(per_day),
            "attempts": self.attempts,
            "events": self.events,
            "write_seconds": round(written, 1),
            "vacuum_analyze_seconds": round(analyzed, 1),
        }


def _copy(conn: psycopg.Connection[Any], statement: str, text: str) -> None:
    data = text.encode()
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for first in range(0, len(data), 1 << 20):
            copy.write(data[first : first + (1 << 20)])


def _seq_scans(plans: list[str]) -> list[str]:
    """The partitions of the big tables that the plans read whole (Seq Scan)."""
    return sorted(
        {
            match.group(1)
            for plan in plans
            for match in re.finditer(r"Seq Scan on (webhooks_(?:deliveries|attempts)_p\d{8})", plan)
        }
    )


def _condensed(plan: str) -> list[str]:
    """A plan with each partition's repeated lines shown once, with how many times."""
    seen: dict[str, int] = {}
    order: list[str] = []
    first: dict[str, str] = {}
    for line in plan.splitlines():
        key = re.sub(r"\d+(\.\d+)?", "#", re.sub(r"_p\d{8}", "_p*", line))
        if key not in seen:
            seen[key] = 0
            order.append(key)
            first[key] = re.sub(r"_p\d{8}", "_p*", line)
        seen[key] += 1
    return [_shortened(first[k]) + (f"   [x{seen[k]}]" if seen[k] > 1 else "") for k in order]


def _shortened(line: str, width: int = 160) -> str:
    return line if len(line) <= width else line[: width - 5] + " ...)"


class Reads:
    """The archive's reads at scale, through the calls the HTTP API and the CLI make on
    the store (DeliveryStore: a page of the log, the lookup by event id, show), with a
    Redis tier of their own that holds none of these deliveries."""

    def __init__(self, dsn: str, redis_url: str, queries: int, seed: int = 5) -> None:
        self.dsn = dsn
        self.settings = Settings(redis_url=redis_url, archive_dsn=dsn)
        self.queries = queries
        self.rng = random.Random(seed)
        with psycopg.connect(dsn) as conn:
            self.tenants = [
                t
                for (t,) in conn.execute(
                    "SELECT DISTINCT tenant_id FROM webhooks_archive_counts ORDER BY 1"
                )
            ]
            # (tenant, status) pairs that have deliveries: a status page of one that has
            # none is an empty answer, not a page.
            self.pairs = conn.execute(
                "SELECT DISTINCT tenant_id, status FROM webhooks_archive_counts ORDER BY 1, 2"
            ).fetchall()
            self.sample = conn.execute(
                "SELECT id, created_at, tenant_id, event_id, status FROM bench_sample"
            ).fetchall()
            low, high = conn.execute(
                "SELECT min(created_at), max(created_at) FROM bench_sample"
            ).fetchone() or (None, None)
        assert low is not None and high is not None
        self.low, self.high = low.timestamp(), high.timestamp()

    def calls(self) -> dict[str, Callable[[DeliveryStore], int]]:
        """One call per kind of read, with fresh random arguments each time it is made."""
        rng = self.rng

        def page(
            store: DeliveryStore,
            status: DeliveryStatus | None,
            tenant: str,
            after: tuple[float, str] | None,
        ) -> int:
            # What the API's list of deliveries calls: the page read as summaries
            # (DeliveryStore.listing where the store has it, else page then summaries).
            listing = getattr(store, "listing", None)
            if listing is not None:
                found, _ = listing(status, 50, tenant=tenant, after=after)
            else:
                ids, _ = store.page(status, 50, tenant=tenant, after=after)
                found = store.summaries(ids)
            return len(found)

        def tenant_page(store: DeliveryStore) -> int:
            return page(store, None, rng.choice(self.tenants), None)

        def tenant_deep_page(store: DeliveryStore) -> int:
            after = (rng.uniform(self.low + 86400, self.high), "")
            return page(store, None, rng.choice(self.tenants), after)

        def status_page(store: DeliveryStore) -> int:
            tenant, status = rng.choice(self.pairs)
            return page(store, DeliveryStatus(status), tenant, None)

        def by_event(store: DeliveryStore) -> int:
            _, _, tenant, event_id, _ = rng.choice(self.sample)
            return len(store.by_event(event_id, tenant))

        def show(store: DeliveryStore) -> int:
            identifier, _, tenant, _, _ = rng.choice(self.sample)
            return len(store.load(identifier, tenant)[0].attempts)

        exhausted = [s for s in self.sample if s[4] == "retries_exhausted"] or self.sample

        def show_exhausted(store: DeliveryStore) -> int:
            identifier, _, tenant, _, _ = rng.choice(exhausted)
            return len(store.load(identifier, tenant)[0].attempts)

        return {
            "page of 50 by tenant, newest": tenant_page,
            "page of 50 by tenant, from a random point": tenant_deep_page,
            "page of 50 by tenant and status, newest": status_page,
            "by event id": by_event,
            "show": show,
            "show, a retries_exhausted one (15 attempts)": show_exhausted,
        }

    def explain(self, report: Path) -> dict[str, list[str]]:
        """Each read once with auto_explain on (ANALYZE, BUFFERS; no per-node timing,
        whose clock reads cost more than the nodes on this machine), its plans sent to
        this client as notices: the plans of the product's own queries."""
        name = self.dsn.rsplit("/", 1)[1]
        settings = {
            "session_preload_libraries": "auto_explain",
            "auto_explain.log_min_duration": "0",
            "auto_explain.log_analyze": "on",
            "auto_explain.log_buffers": "on",
            "auto_explain.log_timing": "off",
            "auto_explain.log_level": "notice",
        }
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            for setting, value in settings.items():
                admin.execute(
                    sql.SQL("ALTER DATABASE {} SET {} = {}").format(
                        sql.Identifier(name),
                        sql.Identifier(*setting.split(".")),
                        sql.Literal(value),
                    )
                )
        plans: dict[str, list[str]] = {}
        system = System(self.settings)
        assert system.archive is not None
        collected: list[str] = []
        try:
            # Every connection the pool will hand out (all it may hold, at once) sends
            # its notices here.
            with ExitStack() as held:
                for _ in range(4):
                    conn = held.enter_context(system.archive.connection())
                    conn.add_notice_handler(
                        lambda diag: collected.append(diag.message_primary or "")
                    )
            for kind, call in self.calls().items():
                collected.clear()
                call(system.deliveries)
                plans[kind] = [p for p in collected if "plan:" in p]
        finally:
            system.close()
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(sql.Identifier(name)))
        with report.open("w") as out:
            for kind, found in plans.items():
                out.write(f"=== {kind}\n" + "\n\n".join(found) + "\n\n")
        return plans

    def time(self) -> dict[str, dict[str, Any]]:
        """p50, p99 and max of ``queries`` calls of each kind, after 10 untimed ones
        (the pool's connections made, the statements prepared where the store
        prepares them), in one process, one call at a time."""
        system = System(self.settings)
        figures: dict[str, dict[str, Any]] = {}
        # Where a call's time goes: the mean ms per call in each of these (the store's
        # summaries include the archive's, and its Redis pipeline for the same ids).
        parts = {
            f"archive.{name}": _Timed(system.archive, name)
            for name in ("listing", "entries", "summaries", "by_event", "load")
        } | {
            "store.summaries": _Timed(system.deliveries, "summaries"),
            "store._redis_page": _Timed(system.deliveries, "_redis_page"),
        }
        try:
            calls = self.calls()
            for call in calls.values():
                for _ in range(10):
                    call(system.deliveries)
            for kind, call in calls.items():
                for timer in parts.values():
                    timer.seconds = 0.0
                spent, items = [], 0
                for _ in range(self.queries):
                    start = time.perf_counter()
                    items += call(system.deliveries)
                    spent.append((time.perf_counter() - start) * 1000)
                figures[kind] = {
                    "p50": _quantile(spent, 50),
                    "p99": _quantile(spent, 99),
                    "max": max(spent),
                    "count": len(spent),
                    "items_each": items / len(spent),  # deliveries (pages) or attempts (show)
                    "mean_ms_in": {
                        name: round(1000 * timer.seconds / len(spent), 2)
                        for name, timer in parts.items()
                        if timer.seconds
                    },
                }
        finally:
            system.close()
        return figures


def scale(rows: int, tenants: int, queries: int, keep: bool, reuse: bool) -> dict[str, Any]:
    free = shutil.disk_usage("/work").free
    if not (reuse and database_exists(SCALE_DB)):
        needed = rows * 2200  # measured: about 1.6 KB a delivery with its attempts, and room
        if needed > free - 10 * 2**30:
            raise RuntimeError(
                f"{rows:,} rows need about {needed / 2**30:.0f} GB; /work has {free / 2**30:.0f} GB"
            )
    figures: dict[str, Any] = {"disk_free_gb_before": round(free / 2**30, 1)}
    dsn = _dsn(SCALE_DB)
    try:
        if reuse and database_exists(SCALE_DB):
            with psycopg.connect(dsn) as conn:
                row = conn.execute("SELECT rows, attempts, events FROM bench_meta").fetchone()
                held = conn.execute("SELECT sum(count) FROM webhooks_archive_counts").fetchone()
            assert row is not None and held is not None
            if row[0] != rows:
                raise RuntimeError(f"--reuse: {SCALE_DB} holds {row[0]:,} rows, not {rows:,}")
            figures["generated"] = {
                "rows": int(held[0]),
                "rows_asked": row[0],
                "attempts": row[1],
                "events": row[2],
                "reused": True,
            }
        else:
            dsn = create_database(SCALE_DB)
            figures["generated"] = Generator(dsn, rows, tenants).run()
        print(f"  generated: {figures['generated']}", flush=True)
        archive = Archive(dsn, (DAYS + 2) * 86400)
        figures["sizes"] = archive.size()
        archive.close()
        with psycopg.connect(dsn) as conn:
            (figures["database_bytes"],) = conn.execute(
                "SELECT pg_database_size(current_database())"
            ).fetchone() or (0,)
            figures["partitions"] = (
                conn.execute(
                    "SELECT count(*) FROM pg_inherits "
                    "WHERE inhparent = 'webhooks_deliveries'::regclass"
                ).fetchone()
                or (0,)
            )[0]
        with own_redis(installed_server()) as redis_url:
            reads = Reads(dsn, redis_url, queries)
            plans = reads.explain(ROOT / "bench" / "results" / "archive-plans.txt")
            figures["reads"] = reads.time()
        figures["plans"] = {kind: found for kind, found in plans.items()}
        # A seq scan of an empty partition (the days ahead that init makes) reads
        # nothing; one of a partition with rows is what must not happen.
        with psycopg.connect(dsn) as conn:
            populated = {
                name
                for (name,) in conn.execute(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE c.reltuples > 0"
                )
            }
        figures["seq_scans"] = {
            kind: [name for name in _seq_scans(found) if name in populated]
            for kind, found in plans.items()
        }
        figures["seq_scans_of_empty"] = {
            kind: len([name for name in _seq_scans(found) if name not in populated])
            for kind, found in plans.items()
        }
    finally:
        if not keep:
            drop_database(SCALE_DB)
    return figures


# --- Sizing ------------------------------------------------------------------------------


def sizing(redis_archived: float, redis_kept: float, pg_each: float) -> list[str]:
    """Redis RAM and PostgreSQL disk at 1, 10 and 100 deliveries/s for 30 and 90 days of
    retention, computed from the measured bytes per delivery. With the archive, Redis
    holds a marker per delivery for up to 30 h (the 24 h idempotency window, plus the
    6 h its markers' hash is kept past it) and each delivery's full record for
    WEBHOOKS_ARCHIVE_AFTER_SECONDS (60 s); without it, every record for the retention."""
    lines = [
        "| deliveries/s | retention | Redis, archive off | Redis, archive on | PostgreSQL |",
        "|---:|---:|---:|---:|---:|",
    ]
    for rate in (1, 10, 100):
        for days in (30, 90):
            off = rate * days * 86400 * redis_kept
            on = rate * 30 * 3600 * redis_archived + rate * 60 * redis_kept
            pg = rate * days * 86400 * pg_each
            lines.append(f"| {rate} | {days} days | {_bytes(off)} | {_bytes(on)} | {_bytes(pg)} |")
    return lines


def _bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} B"


# --- Main ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.archive")
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument(
        "--parts", default="moves,archiver,scale", help="comma-separated: moves,archiver,scale"
    )
    parser.add_argument("--rows", type=int, default=None, help="archived deliveries for scale")
    parser.add_argument("--keep", action="store_true", help="keep the scale database")
    parser.add_argument(
        "--reuse", action="store_true", help="measure a kept scale database of --rows rows"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "archive.json")
    args = parser.parse_args()
    size = SIZES[args.size]
    parts = set(args.parts.split(","))
    load_event_modules(Settings().event_modules)  # the event types, as a System loads them
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": args.size,
        "machine": f"{os.cpu_count()} cores",
        "code": code_state(),
    }
    print(f"code: {report['code']}", flush=True)
    started = time.time()
    binary = installed_server()
    if parts & {"moves", "archiver"}:
        dsn = create_database(MOVES_DB)
        try:
            with own_redis(binary) as redis_url:
                info = redis.Redis.from_url(redis_url).info("server")
                allocator = redis.Redis.from_url(redis_url).info("memory")["mem_allocator"]
                report["redis"] = f"Redis {info['redis_version']} ({allocator}), {binary}"
                print(f"own Redis: {report['redis']}, no persistence", flush=True)
                if "moves" in parts:
                    print(
                        f"moves: {size['deliveries']:,} deliveries a turn, event of "
                        f"{body_size()} bytes",
                        flush=True,
                    )
                    with FastReceiver() as rx:
                        report["moves"] = moves(
                            redis_url, dsn, rx, size["deliveries"], size["rounds"]
                        )
                    _print_moves(report["moves"])
                if "archiver" in parts:
                    Archive(dsn, 90 * 86400).init()
                    report["archiver"] = []
                    for batch, archivers in ((1000, 1), (5000, 1), (5000, 2)):
                        row = archiver_rate(redis_url, dsn, size["seeded"], batch, archivers)
                        report["archiver"].append(row)
                        _print_archiver(row)
        finally:
            drop_database(MOVES_DB)
    if "scale" in parts:
        rows = args.rows or size["rows"]
        print(f"scale: {rows:,} archived deliveries over {DAYS} days", flush=True)
        report["scale"] = scale(rows, size["tenants"], size["queries"], args.keep, args.reuse)
        _print_scale(report["scale"])
    if "moves" in report:
        moved = report["moves"]
        on_turns = [t for t in moved["turns"] if t["archive"]]
        pg_each = statistics.median([t["pg_bytes_each"] for t in on_turns])
        source = "the archiver's own writes above"
        if "scale" in report:
            # The bigger sample, of tenants' deliveries (their indexes hold tenant and
            # endpoint ids, which bare-URL deliveries leave empty) with their attempts.
            scaled = report["scale"]
            pg_each = (
                sum(v for k, v in scaled["sizes"].items() if k != "deliveries")
                / (scaled["generated"]["rows"])
            )
            source = f"the {scaled['generated']['rows']:,} generated deliveries"
        report["pg_bytes_each_for_sizing"] = pg_each
        report["sizing"] = sizing(moved["redis_bytes_on"], moved["redis_bytes_off"], pg_each)
        print(
            f"\nsizing, computed from the measured bytes per delivery: Redis "
            f"{moved['redis_bytes_on']:,.0f} B archived / {moved['redis_bytes_off']:,.0f} B kept, "
            f"PostgreSQL {pg_each:,.0f} B (from {source}):"
        )
        print("\n".join(report["sizing"]))
    report["seconds"] = round(time.time() - started, 1)
    args.json.write_text(json.dumps(report, indent=2, default=str))
    print(f"\n{report['date']}, {report['seconds']} s; written to {args.json}")
    return 0


def _print_moves(moved: dict[str, Any]) -> None:
    print(
        f"moves, {moved['count']:,} deliveries a turn (off, on, on, off): throughput "
        f"{moved['rate_on']:,.1f}/s on vs {moved['rate_off']:,.1f}/s off (medians), "
        f"{moved['ratio']:.2f}x"
    )
    on, off = moved["cpu_ms_each_on"], moved["cpu_ms_each_off"]
    print(
        "  CPU ms per delivery, on vs off (medians): "
        + ", ".join(f"{k} {on[k]:.2f} vs {off[k]:.2f}" for k in on)
    )
    print(
        f"  Redis used_memory per finished delivery: {moved['redis_bytes_on']:,.0f} B once "
        f"archived, {moved['redis_bytes_off']:,.0f} B without the archive"
    )
    for turn in moved["turns"]:
        if turn["archive"]:
            grown = turn["pg_grown"]
            print(
                f"  PostgreSQL per delivery: {turn['pg_bytes_each']:,.0f} B (deliveries "
                f"{grown['deliveries_table'] / moved['count']:,.0f} + indexes "
                f"{grown['deliveries_indexes'] / moved['count']:,.0f}; attempts "
                f"{grown['attempts_table'] / moved['count']:,.0f} + index "
                f"{grown['attempts_indexes'] / moved['count']:,.0f}); all archived "
                f"{turn['settled_seconds']:.1f} s after publishing began"
            )
    last_on = [t for t in moved["turns"] if t["archive"]][-1]
    print("  what Redis holds after an archived turn (biggest key families):")
    for row in last_on["keys"][:8]:
        print(f"    {row['family']:<60} {row['keys']:>6} keys {row['bytes']:>10,} B")
    for turn in moved["turns"]:
        if turn["worker_log_problems"]:
            print(f"  worker log ({'on' if turn['archive'] else 'off'}):")
            for line in turn["worker_log_problems"][:5]:
                print(f"    {line}")


def _print_archiver(row: dict[str, Any]) -> None:
    steps = ", ".join(f"{k} {v:.0f}" for k, v in row["step_ms_per_1000"].items())
    cpu = ", ".join(f"{k} {v:.0f}" for k, v in row["cpu_ms_per_1000"].items())
    print(
        f"archiver x{row['archivers']}, WEBHOOKS_ARCHIVE_BATCH={row['batch']}: "
        f"{row['rate']:,.0f} deliveries/s ({row['archived']:,} moved in {row['seconds']:.2f} s, "
        f"{row['rounds']} rounds); per 1,000: wall ms {steps}; CPU ms {cpu}; longest Redis "
        f"command {row['redis_longest_command_ms']:.1f} ms; backlog left "
        f"{row['backlog_after']} (seeded {row['seeded']} in {row['seed_seconds']} s)",
        flush=True,
    )


def _print_scale(figures: dict[str, Any]) -> None:
    sizes = figures["sizes"]
    rows = figures["generated"]["rows"]
    total = sum(v for k, v in sizes.items() if k != "deliveries")
    print(
        f"scale: {rows:,} deliveries in {figures['partitions']} partitions, database "
        f"{figures['database_bytes'] / 2**30:.1f} GiB; tables and indexes "
        f"{total / rows:,.0f} B per delivery: "
        + ", ".join(f"{k} {v / 2**30:.2f} GiB" for k, v in sizes.items() if k != "deliveries")
    )
    for kind, found in figures["plans"].items():
        scans = figures["seq_scans"][kind]
        print(
            f"\n  EXPLAIN ANALYZE, {kind}: {len(found)} queries; seq scans of partitions "
            f"with rows: {len(scans)} {' '.join(scans[:3])}{' ...' if len(scans) > 3 else ''}"
            f" (of empty ones: {figures['seq_scans_of_empty'][kind]})"
        )
        for plan in found:
            for line in _condensed(plan):
                print(f"    {line}")
    print(f"\n  reads, {next(iter(figures['reads'].values()))['count']} random calls each:")
    for kind, row in figures["reads"].items():
        print(
            f"    {kind:<62} p50 {row['p50']:7.2f} ms  p99 {row['p99']:7.2f} ms  "
            f"max {row['max']:7.2f} ms  ({row['items_each']:.1f} items each)"
        )
        print(
            "        mean ms in: "
            + ", ".join(f"{name} {ms:.2f}" for name, ms in row["mean_ms_in"].items())
        )


if __name__ == "__main__":
    raise SystemExit(main())
