"""What one delivery costs Redis: commands and CPU, first try and retried once.

    python -m bench.capacity [--count 1000] [--turns 1]

On a Redis server of its own (the machine's redis-server, started here, so that
nothing else is counted), with
a worker started with the Procfile's command and a receiver on loopback: the
Redis commands per delivery (INFO commandstats, those run inside Lua scripts
included), the round trips (requests read from clients: INFO's
total_reads_processed, which counts a large request once per socket read, so the
producer's share, one bulk request read in pieces, is also shown apart) and
Redis's CPU per delivery (INFO cpu, user + system), for deliveries
answered 200 at once and for deliveries answered 500 once, then 200. What the
workers' idle polling costs over the same time is measured first and taken out.
With ``--turns N``, all of it is measured N times, each on a server of its own, and
the turn of the median first-try CPU is printed with every turn's CPU: this
machine's speed drifts by a fifth within a minute, and one turn carries it all.
`python -m bench` reports it as scenario (i), running this in a process of its own
(the settings are read once per process).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from webhooks.dev.receiver import Receiver
from webhooks.dev.redis_server import RedisProcess, installed_server
from webhooks.dev.worker import start_worker, stop_worker


def _snapshot(client: redis.Redis) -> tuple[float, Counter[str], int]:
    """Redis CPU seconds, calls per command (those inside scripts and transactions
    included) and requests read from clients (round trips: a pipeline, transaction
    or script call is one), so far."""
    cpu = client.info("cpu")
    calls = Counter(
        {
            name.removeprefix("cmdstat_"): int(stats["calls"])
            for name, stats in client.info("commandstats").items()
        }
    )
    reads = int(client.info("stats")["total_reads_processed"])
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), calls, reads


@contextmanager
def workload() -> Iterator[tuple[redis.Redis, Receiver]]:
    """A Redis server of its own (the machine's), a receiver on loopback and a worker
    started with the Procfile's command on that Redis, every delivery to the one
    receiver: a client of that Redis and the receiver, once the worker is up."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisProcess(Path(tmp), binary=installed_server()) as server,
        Receiver() as receiver,
    ):
        env = {
            "WEBHOOKS_REDIS_URL": server.url,
            "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
            # the retried ones wait 10 ms, not 5 s: time compressed, work the same
            "WEBHOOKS_RETRY_BASE_SECONDS": "0.01",
            "WEBHOOKS_RETRY_JITTER": "0",
            # every delivery goes to one receiver: its limit and breaker lifted, so
            # that what is counted is a delivery's cost, not a queue at one door
            "WEBHOOKS_DESTINATION_CONCURRENCY": "1000",
            "WEBHOOKS_BREAKER_FAILURES": "1000000",
        }
        os.environ.update(env)
        # Imported now: the settings are read once, with the environment above.
        from bench.scenarios import procfile_worker

        client = redis.Redis.from_url(server.url)
        worker = start_worker(Path(tmp) / "worker.log", env, *procfile_worker())
        try:
            time.sleep(1.0)
            yield client, receiver
        finally:
            stop_worker(worker)
            client.close()


def measure(count: int, idle_seconds: float = 3.0) -> dict[str, Any]:
    """Per delivery: Redis commands and Redis CPU (ms), first try and retried once."""
    with workload() as (client, receiver):
        from bench.scenarios import one_kb_event
        from webhooks import deliver_many

        figures: dict[str, Any] = {"redis": client.info("server")["redis_version"]}
        cpu0, calls0, reads0 = _snapshot(client)
        time.sleep(idle_seconds)
        cpu1, calls1, reads1 = _snapshot(client)
        idle_cpu = (cpu1 - cpu0) / idle_seconds
        idle_calls = sum((calls1 - calls0).values()) / idle_seconds
        idle_reads = (reads1 - reads0) / idle_seconds
        figures["idle"] = {
            "commands_per_s": round(idle_calls, 1),
            "cpu_ms_per_s": round(idle_cpu * 1000, 2),
        }
        for kind, path in (("first_try", "/ok/capacity"), ("retried_once", "/fail/1/capacity")):
            client.config_resetstat()
            before_cpu, before_calls, before_reads = _snapshot(client)
            start = time.monotonic()
            deliver_many([(receiver.url(path), one_kb_event(n)) for n in range(count)])
            # The producer's bulk write is one request, but Redis reads a batch of
            # this size in many socket reads, each counted in total_reads_processed:
            # those are counted apart (the workers wait meanwhile: the batch's
            # messages are pushed as its script ends). Three are the INFO calls.
            created = time.monotonic()
            producer_reads = (
                _snapshot(client)[2] - before_reads - 3 - idle_reads * (created - start)
            )
            deadline = start + 120
            polls = 4  # this loop's own ZCARDs and the INFO calls above, taken out below
            while client.zcard("webhooks:deliveries:delivered") < count and (
                time.monotonic() < deadline
            ):
                polls += 1
                time.sleep(0.02)
            elapsed = time.monotonic() - start
            after_cpu, after_calls, after_reads = _snapshot(client)
            calls = after_calls - before_calls
            reads = (after_reads - before_reads) - idle_reads * elapsed - polls
            total = sum(calls.values()) - idle_calls * elapsed - polls
            cpu = (after_cpu - before_cpu) - idle_cpu * elapsed
            figures[kind] = {
                "commands": round(total / count, 1),
                "round_trips": round(reads / count, 2),
                "producer_reads": round(producer_reads / count, 2),
                "cpu_ms": round(cpu * 1000 / count, 3),
                "deliveries_per_redis_core_s": round(count / cpu) if cpu > 0 else None,
                "seconds": round(elapsed, 2),
                "top": {name: round(n / count, 2) for name, n in calls.most_common(8)},
            }
            client.flushdb()
            time.sleep(0.5)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument(
        "--idle", type=float, default=3.0, help="seconds of idle workers measured first"
    )
    parser.add_argument(
        "--turns", type=int, default=1, help="times it is all measured (the median is shown)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.turns < 1:
        parser.error("--turns: at least 1")
    if args.turns == 1:
        figures = median_turn([measure(args.count, args.idle)])
    else:
        # Each turn in a process of its own, as its settings are read once per process.
        from bench.scenarios import in_own_process

        turn = ("bench.capacity", "--count", args.count, "--idle", args.idle)
        figures = median_turn([in_own_process(*turn, timeout=600) for _ in range(args.turns)])
    if args.json:
        print(json.dumps(figures))
        return 0
    idle = figures["idle"]
    print(f"Redis {figures['redis']}")
    print(
        f"idle workers: {idle['commands_per_s']} commands/s, {idle['cpu_ms_per_s']} ms of "
        "Redis CPU per s (taken out below)"
    )
    for kind in ("first_try", "retried_once"):
        row = figures[kind]
        print(
            f"{kind.replace('_', ' ')}: {row['commands']} Redis commands in "
            f"{row['round_trips']} round trips (of which {row['producer_reads']} are the "
            "socket reads of deliver_many's one request) and "
            f"{row['cpu_ms']} ms of Redis CPU per delivery "
            f"(one Redis core: {row['deliveries_per_redis_core_s']:,}/s; all done in "
            f"{row['seconds']} s); most called: "
            + ", ".join(f"{name} {n}" for name, n in row["top"].items())
        )
    if len(figures["turns"]) > 1:
        for kind in ("first_try", "retried_once"):
            each = ", ".join(f"{turn[kind]:.3f}" for turn in figures["turns"])
            print(f"{kind.replace('_', ' ')}, Redis CPU per delivery in each turn: {each} ms")
    return 0


def median_turn(turns: list[dict[str, Any]]) -> dict[str, Any]:
    """The turn of the median first-try CPU (the lower of the middle two), with each
    turn's CPU per delivery (ms) under ``turns``."""
    ranked = sorted(turns, key=lambda turn: float(turn["first_try"]["cpu_ms"]))
    return {
        **ranked[(len(ranked) - 1) // 2],
        "turns": [
            {kind: turn[kind]["cpu_ms"] for kind in ("first_try", "retried_once")} for turn in turns
        ],
    }


if __name__ == "__main__":
    raise SystemExit(main())
