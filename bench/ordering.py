"""What ordered delivery costs: the same events, with and without ordering keys, in one run.

    python -m bench.ordering [--events 1000] [--keys 10] [--rounds 3] [--destination-concurrency N]

A Redis server of its own, the Procfile's worker (8 processes) and a receiver on
loopback that answers 200. Each round publishes ``--events`` 1 KB events to one
endpoint and times them until every one is delivered:

- unordered: no ordering key, every delivery at once;
- ordered: the events spread round-robin over ``--keys`` keys;
- one key: ``--events`` / 5 events of a single key (the chain's step, end to end);

and it measures what a waiting delivery holds in Redis beyond an unordered one (the
first message kept for its wake). ``--destination-concurrency`` sets the worker's
per-destination limit (default: the setting's, 4), which every round to the one
endpoint meets. Figures are printed; nothing is judged.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import redis

from bench.scenarios import one_kb_event, procfile_worker
from webhooks.dev.receiver import Receiver
from webhooks.dev.redis_server import RedisProcess, installed_server
from webhooks.dev.worker import start_worker, stop_worker
from webhooks.models import FINAL_STATUSES
from webhooks.producer import Producer
from webhooks.settings import Settings
from webhooks.system import System

LOOPBACK = "127.0.0.0/8"


def _round(system: System, tenant: str, count: int, keys: int, start: int) -> dict[str, float]:
    """Publish ``count`` events (over ``keys`` keys; 0: none) and wait for them all."""
    producer, ids = Producer(system), []
    started = time.perf_counter()
    for n in range(count):
        key = f"set_{n % keys}" if keys else None
        ids += producer.publish(one_kb_event(start + n), tenant=tenant, ordering_key=key)
    published = time.perf_counter() - started
    while not all(s in FINAL_STATUSES for s in system.deliveries.statuses(ids)):
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    return {
        "publish_ms": published * 1000 / count,
        "seconds": elapsed,
        "per_second": count / elapsed,
    }


def _waiting_bytes(system: System, client: redis.Redis, tenant: str, count: int) -> float:
    """Redis bytes a waiting delivery holds beyond an unordered one (no worker runs)."""
    producer = Producer(system)
    before = int(client.info("memory")["used_memory"])
    for n in range(count):
        producer.publish(one_kb_event(10**7 + n), tenant=tenant)
    plain = int(client.info("memory")["used_memory"]) - before
    before = int(client.info("memory")["used_memory"])
    for n in range(count):
        producer.publish(one_kb_event(2 * 10**7 + n), tenant=tenant, ordering_key="one")
    ordered = int(client.info("memory")["used_memory"]) - before
    return (ordered - plain) / count


def _median(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}


def main(events: int, keys: int, rounds: int, limit: int | None) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisProcess(Path(tmp), binary=installed_server()) as server,
        Receiver() as receiver,
    ):
        client = redis.Redis.from_url(server.url)
        system = System(Settings(redis_url=server.url, allowed_networks=LOOPBACK), client=client)
        system.tenants.add("acct_bench", "Bench")
        system.endpoints.add(receiver.url("/ok"), tenant="acct_bench")
        env = {"WEBHOOKS_REDIS_URL": server.url, "WEBHOOKS_ALLOWED_NETWORKS": LOOPBACK}
        if limit is not None:
            env["WEBHOOKS_DESTINATION_CONCURRENCY"] = str(limit)
        worker = start_worker(Path(tmp) / "worker.log", env, *procfile_worker())
        try:
            _round(system, "acct_bench", min(events, 200), 0, 0)  # warm: pools, scripts
            # Alternated, and the median kept: the machine's other load moves each round.
            runs: dict[str, list[dict[str, float]]] = {"plain": [], "ordered": [], "single": []}
            for r in range(rounds):
                start = (r + 1) * 10**5
                runs["plain"].append(_round(system, "acct_bench", events, 0, start))
                runs["ordered"].append(
                    _round(system, "acct_bench", events, keys, start + 3 * 10**4)
                )
                runs["single"].append(
                    _round(system, "acct_bench", max(events // 5, 1), 1, start + 6 * 10**4)
                )
            plain, ordered, single = (
                _median(runs[name]) for name in ("plain", "ordered", "single")
            )
        finally:
            stop_worker(worker)
        held = _waiting_bytes(system, client, "acct_bench", max(events // 5, 1))
        client.close()
    print(
        f"{events:,} events of 1 KB to one endpoint, the Procfile's worker (8 processes), "
        f"median of {rounds} alternated rounds, destination concurrency "
        f"{limit if limit is not None else 'as set (default 4)'}"
    )
    for name, figures in (
        ("no ordering key", plain),
        (f"over {keys} ordering keys", ordered),
        (f"one ordering key ({max(events // 5, 1):,} events)", single),
    ):
        print(
            f"  {name:32}: {figures['per_second']:7.0f} deliveries/s, "
            f"{figures['seconds']:6.2f} s in all, publish {figures['publish_ms']:.2f} ms each"
        )
    print(
        f"  ordered over {keys} keys / unordered: {ordered['per_second'] / plain['per_second']:.2f}"
    )
    step = 1000 / single["per_second"]
    print(f"  one key, publish to delivered, per delivery: {step:.1f} ms")
    print(f"  Redis held by a waiting delivery beyond an unordered one: {held:.0f} bytes")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--destination-concurrency", type=int, default=None)
    arguments = parser.parse_args()
    main(arguments.events, arguments.keys, arguments.rounds, arguments.destination_concurrency)
