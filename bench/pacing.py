"""Adaptive pacing against fixed pacing, in one run: a receiver that answers 429 above
15 requests a second gets COUNT deliveries through two workers, once with
WEBHOOKS_ADAPTIVE_PACING on and once off (the configured limits only: 4 in flight,
no rate limit).

    python -m bench.pacing [COUNT]      (default 1,000)
    python -m bench.pacing cost [RUNS]  (default 5,000)

``cost`` measures what the rules add to one attempt's Redis work: RUNS claims and
records at one endpoint (no HTTP), with adaptive pacing off, on, and with a rate
limit (10,000/s, checked on every claim, never reached), in microseconds each.

Uses Redis database 13 of WEBHOOKS_REDIS_URL's server (flushed before and after),
a receiver on 127.0.0.1, and the tests' compressed clock: retries wait base
0.5 ms * 2**n (so fixed pacing runs through its 15 attempts in seconds), claims
lapse after 3 s. Prints, for each, how long it took (fixed pacing is stopped
after twice adaptive's time), how many deliveries were delivered, the attempts,
the share of them answered 429, and the most requests in any one second.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("WEBHOOKS_REDIS_URL", "redis://127.0.0.1:6379/13")

import redis

from webhooks.clock import now
from webhooks.dev.receiver import Receiver
from webhooks.dev.redis_server import ensure_redis
from webhooks.dev.worker import start_worker, stop_worker
from webhooks.events import parse_event
from webhooks.models import FINAL_STATUSES, Attempt, Delivery, DeliveryStatus, Endpoint, Run
from webhooks.producer import Producer, new_delivery
from webhooks.settings import Settings
from webhooks.storage.destinations import Strain
from webhooks.system import System

#: The receiver's own limit, requests a second.
RECEIVER_LIMIT = 15
QUEUE = "pacing"

#: The tests' compressed clock (tests/conftest.py's WORKER_ENV), at the default
#: destination limits.
CLOCK = {
    "WEBHOOKS_RETRY_BASE_SECONDS": "0.0005",
    "WEBHOOKS_RETRY_JITTER": "0",
    "WEBHOOKS_TIMEOUT_SECONDS": "1",
    "WEBHOOKS_CONNECT_TIMEOUT_SECONDS": "1",
    "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
    "WEBHOOKS_PARK_THRESHOLD_SECONDS": "0.1",
    "WEBHOOKS_RECOVERY_SECONDS": "3",
    "WEBHOOKS_DISABLE_AFTER_SECONDS": "86400",
}


@dataclass(frozen=True)
class Figures:
    """One run: the deliveries, what became of them, and what the receiver answered."""

    adaptive: bool
    count: int
    seconds: float
    delivered: int
    attempts: int
    refused: int  # attempts answered 429
    busiest_second: int  # the most requests the receiver got in any one second

    @property
    def refused_share(self) -> float:
        return self.refused / self.attempts if self.attempts else 0.0


def run(
    redis_url: str,
    count: int,
    adaptive: bool,
    log_dir: Path,
    timeout: float = 300.0,
    env: dict[str, str] | None = None,
) -> Figures:
    """COUNT deliveries to a fresh endpoint of a receiver that answers 429 above
    RECEIVER_LIMIT a second, through two workers on a queue of their own."""
    settings = {**CLOCK, **(env or {}), "WEBHOOKS_REDIS_URL": redis_url}
    settings["WEBHOOKS_ADAPTIVE_PACING"] = "true" if adaptive else "false"
    system = System(Settings(redis_url=redis_url, allowed_networks="127.0.0.0/8"))
    tenant = f"acct_pacing_{int(time.time() * 1000)}"
    system.tenants.add(tenant, "Pacing")
    name = "adaptive" if adaptive else "fixed"
    workers = [
        start_worker(
            log_dir / f"{name}{i}.log",
            settings,
            "-Q",
            QUEUE,
            "--concurrency=4",
            "-n",
            f"{name}{i}@%h",
        )
        for i in range(2)
    ]
    try:
        with Receiver() as receiver:
            endpoint, _ = system.endpoints.add(
                receiver.url(f"/limit/{RECEIVER_LIMIT}/{name}"), tenant=tenant
            )
            deliveries = _create(system, endpoint, count, name, QUEUE)
            producer = Producer(system)
            started = time.monotonic()
            producer.enqueue([Run(d.id) for d in deliveries], queue=QUEUE)
            ids = [d.id for d in deliveries]
            deadline = started + timeout
            statuses = system.deliveries.statuses(ids)
            while time.monotonic() < deadline and not all(s in FINAL_STATUSES for s in statuses):
                time.sleep(0.2)
                statuses = system.deliveries.statuses(ids)
            seconds = time.monotonic() - started
            answers = [code for _, _, code in receiver.answers]
            times = sorted(r.at for r in receiver.received())
    finally:
        for worker in workers:
            stop_worker(worker)
        system.tenants.delete(tenant)
    return Figures(
        adaptive,
        count,
        seconds,
        statuses.count(DeliveryStatus.DELIVERED),
        len(answers),
        answers.count(429),
        _busiest(times),
    )


def cost(redis_url: str, runs: int, rounds: int = 5) -> dict[str, tuple[float, float]]:
    """Microseconds per claim + record at one endpoint, for each configuration: wall
    time, and Redis's own time in the two scripts (INFO commandstats, which the
    machine's other load disturbs far less); the median of ``rounds`` rounds, the
    configurations taking turns."""
    configurations = (
        ("adaptive off, no rate limit", False, None),
        ("adaptive on, no rate limit", True, None),
        ("adaptive on, rate limit", True, 10_000.0),
    )
    measured: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in configurations}
    for turn in range(rounds):
        for name, adaptive, rate in configurations:
            measured[name].append(_cost_round(redis_url, runs, adaptive, rate, f"c{turn}"))
    return {
        name: (
            statistics.median(wall for wall, _ in values),
            statistics.median(lua for _, lua in values),
        )
        for name, values in measured.items()
    }


def _cost_round(
    redis_url: str, runs: int, adaptive: bool, rate: float | None, tag: str
) -> tuple[float, float]:
    """Microseconds per claim + record in one round of one configuration: wall time,
    and Redis's time in scripts."""
    system = System(
        Settings(
            redis_url=redis_url,
            allowed_networks="127.0.0.0/8",
            adaptive_pacing=adaptive,
            destination_concurrency=runs + 1,
        )
    )
    tenant = f"acct_cost_{int(time.time() * 1000)}"
    system.tenants.add(tenant, "Cost")
    endpoint, _ = system.endpoints.add("http://127.0.0.1:9/cost", tenant=tenant, rate_limit=rate)
    deliveries = _create(system, endpoint, runs, f"{tag}{int(adaptive)}{int(rate or 0)}", None)
    attempt = Attempt(
        number=1,
        started_at=now(),
        duration_ms=3.0,
        status_code=200,
        error=None,
        response_body="",
    )
    strain = Strain.of(attempt, None, rate)
    client = redis.Redis.from_url(redis_url)
    client.config_resetstat()
    started = time.perf_counter()
    for delivery in deliveries:
        run = Run(delivery.id)
        system.deliveries.claim_attempt(run, 30)
        system.deliveries.record_attempt(
            run, attempt, DeliveryStatus.DELIVERED, destination=endpoint.id, strain=strain
        )
    took = (time.perf_counter() - started) / runs * 1e6
    stats = client.info("commandstats")
    lua = sum(stats.get(f"cmdstat_{name}", {}).get("usec", 0) for name in ("evalsha", "eval"))
    system.tenants.delete(tenant)
    return took, lua / runs


def _create(
    system: System, endpoint: Endpoint, count: int, tag: str, queue: str | None
) -> list[Delivery]:
    """COUNT deliveries of an event each to ``endpoint``, written (not enqueued)."""
    event = parse_event(_event())
    deliveries = [
        new_delivery(
            event.model_copy(update={"id": f"evt_{tag}_{i}"}),
            endpoint.url,
            endpoint.id,
            queue=queue,
            tenant_id=endpoint.tenant_id,
        )
        for i in range(count)
    ]
    system.deliveries.create_many(deliveries, Producer(system).encode_checked(event))
    return deliveries


def _busiest(times: list[float]) -> int:
    """The most of ``times`` (sorted) in any one-second window."""
    most, start = 0, 0
    for end, moment in enumerate(times):
        while times[start] <= moment - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def _event() -> dict[str, object]:
    return {
        "id": "evt_pacing",
        "type": "screenshot_set.approved",
        "created_at": "2026-11-26T10:00:00Z",
        "data": {
            "screenshot_set": {
                "id": "set_1",
                "screenshots": [
                    {
                        "id": "shot_1",
                        "status": "no_slots_found",
                        "ad": {"id": "ad_1", "status": "uploaded"},
                    }
                ],
            }
        },
    }


def main_cost(runs: int) -> None:
    url = os.environ["WEBHOOKS_REDIS_URL"]
    with ensure_redis(url):
        client = redis.Redis.from_url(url)
        client.flushdb()
        try:
            figures = cost(url, runs)
        finally:
            client.flushdb()
    print(f"{runs:,} claims and records at one endpoint (no HTTP), each (median of 5):")
    print(f"  {'':30} {'wall':>8} {'in Redis':>9}")
    for name, (wall, lua) in figures.items():
        print(f"  {name:30} {wall:6.0f} µs {lua:6.1f} µs")


def main(count: int) -> None:
    url = os.environ["WEBHOOKS_REDIS_URL"]
    with ensure_redis(url), tempfile.TemporaryDirectory() as tmp:
        client = redis.Redis.from_url(url)
        client.flushdb()
        try:
            adaptive = run(url, count, True, Path(tmp))
            # Fixed pacing's breaker opens on the storm and parks the backlog for its
            # cooldown (30 s, doubling): it gets twice adaptive's time, then is counted.
            fixed = run(url, count, False, Path(tmp), timeout=max(60.0, 2 * adaptive.seconds))
            rows = [adaptive, fixed]
        finally:
            client.flushdb()
    print(f"{count:,} deliveries, a receiver that answers 429 above {RECEIVER_LIMIT}/s:")
    print(
        f"  {'pacing':9} {'seconds':>8} {'delivered':>10} {'attempts':>9} {'429s':>6} "
        f"{'share':>6} {'busiest s':>10}"
    )
    for row in rows:
        print(
            f"  {'adaptive' if row.adaptive else 'fixed':9} {row.seconds:8.1f} "
            f"{row.delivered:10,} {row.attempts:9,} {row.refused:6,} {row.refused_share:6.1%} "
            f"{row.busiest_second:10,}"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["cost"]:
        main_cost(int(sys.argv[2]) if len(sys.argv) > 2 else 5000)
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
