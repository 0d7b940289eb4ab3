"""The benchmark scenarios (a) to (h). Each returns a row for the table and the JSON."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
import requests

from bench.receiver import FastReceiver
from webhooks import deliver, deliver_many
from webhooks.dev.worker import kill_worker, start_worker
from webhooks.system import System, set_default

ROOT = Path(__file__).resolve().parent.parent
Row = dict[str, Any]


def procfile_worker() -> list[str]:
    """The worker arguments of the Procfile's worker line: production's own command."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("worker:"):
            words = line.split(":", 1)[1].split()
            return words[words.index("worker") + 1 :]
    raise RuntimeError("no worker line in the Procfile")


def one_kb_event(number: int = 0) -> dict[str, Any]:
    shots = [
        {
            "id": f"shot_{n}",
            "status": "uploaded",
            "site_url": "https://news.example.com/",
            "download_url": f"https://cdn.example.com/sets/{number}/shot_{n}.png",
            "ad": {"id": f"ad_{n}", "status": "uploaded"},
        }
        for n in range(5)
    ]
    return {
        "id": f"evt_{number}",
        "type": "screenshot_set.approved",
        "created_at": "2026-11-26T10:00:00Z",
        "data": {"screenshot_set": {"id": f"set_{number}", "screenshots": shots}},
    }


def _row(
    name: str,
    ours: float,
    baseline: float | None,
    unit: str,
    target: str,
    ratio: float | None = None,
    **extra: Any,
) -> Row:
    if ratio is None and baseline:
        ratio = ours / baseline
    return {
        "name": name,
        "ours": f"{ours:,.1f} {unit}",
        "baseline": f"{baseline:,.1f} {unit}" if baseline is not None else "",
        "ratio": f"{ratio:.2f}x" if ratio is not None else "",
        "target": target,
        "values": {"ours": ours, "baseline": baseline, "ratio": ratio, **extra},
    }


def report(measure: Callable[[], dict[str, Any]], as_json: bool, width: int) -> int:
    """Run a single scenario's ``measure`` against the benchmarks' Redis (started if none
    answers) and print its figures: one JSON line, or a line each, names ``width`` wide."""
    from webhooks.dev.redis_server import ensure_redis

    with ensure_redis(os.environ["WEBHOOKS_REDIS_URL"]):
        result = measure()
    if as_json:
        print(json.dumps(result))
    else:
        for name, value in result.items():
            print(f"{name:<{width}} {value}")
    return 0


def _wait_for(count: Callable[[], int], wanted: int, cap: float) -> tuple[float, int]:
    """Seconds until ``count()`` reaches ``wanted`` (or ``cap``), and the count then."""
    start = time.perf_counter()
    while (seen := count()) < wanted and time.perf_counter() - start < cap:
        time.sleep(0.02)
    return time.perf_counter() - start, seen


@contextmanager
def _worker(*extra: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    client = redis.Redis.from_url(os.environ["WEBHOOKS_REDIS_URL"])
    client.flushdb()
    with tempfile.TemporaryDirectory() as tmp:
        process = start_worker(
            Path(tmp) / "worker.log",
            {"WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8", **(env or {})},
            *procfile_worker(),
            *extra,
        )
        try:
            yield process
        finally:
            kill_worker(process)  # blackholed attempts would hold a warm shutdown for 15 s
            client.flushdb()


def bare_loop(url: str, count: int) -> float:
    """Requests per second of a plain requests.Session POST loop on one thread."""
    body = json.dumps(one_kb_event()).encode()
    with requests.Session() as session:
        start = time.perf_counter()
        for _ in range(count):
            session.post(url, data=body, headers={"Content-Type": "application/json"})
        return count / (time.perf_counter() - start)


def throughput(rx: FastReceiver, count: int) -> Row:
    """(a) enqueue-to-received throughput to a fast receiver, against the bare loop.

    The bare loop runs before and after ours and the baseline is their mean, so a
    change in the machine's load during the run does not favour either side.
    """
    before = bare_loop(rx.url("/bare"), count)
    with _worker():
        ours = _end_to_end(rx, count, "a")
    after = bare_loop(rx.url("/bare"), count)
    return _row(
        "(a) throughput, fast receiver (deliveries/s)",
        ours,
        (before + after) / 2,
        "/s",
        ">= 1.0x",
        bare_before=before,
        bare_after=after,
    )


def _end_to_end(rx: FastReceiver, count: int, path: str) -> float:
    """Deliveries per second from deliver_many to the receiver, with the worker running."""
    start = time.perf_counter()
    deliver_many([(rx.url(f"/{path}"), one_kb_event(n)) for n in range(count)])
    _, seen = _wait_for(lambda: rx.count(path), count, cap=120)
    return seen / (time.perf_counter() - start)


def metrics_cost(rx: FastReceiver, count: int, turns: int = 8) -> Row:
    """(h) end-to-end throughput with metrics on (WEBHOOKS_METRICS, the default) against
    off: ``turns`` turns in the order off, on, on, off, off, on, ..., so that warm-up
    and drift weigh on both sides alike; the medians of each side. The tiny size's 2
    turns (off, on) only show that both sides run. Producer and worker count in the
    same scripts that record, or skip it."""
    rates: dict[str, list[float]] = {"true": [], "false": []}
    for turn in range(turns):
        setting = "true" if turn % 4 in (1, 2) else "false"
        os.environ["WEBHOOKS_METRICS"] = setting  # this process, the producer
        set_default(System())
        with _worker(env={"WEBHOOKS_METRICS": setting}):
            rates[setting].append(_end_to_end(rx, count, f"h{turn}x{time.time_ns()}"))
    os.environ.pop("WEBHOOKS_METRICS")
    set_default(System())
    on, off = statistics.median(rates["true"]), statistics.median(rates["false"])
    return _row(
        "(h) throughput with metrics on vs off (deliveries/s)",
        on,
        off,
        "/s",
        ">= 0.95x",
        on_runs=[round(r) for r in rates["true"]],
        off_runs=[round(r) for r in rates["false"]],
    )


def enqueue_rate(rx: FastReceiver, count: int, runs: int = 5) -> Row:
    """(b) deliveries enqueued per second: bulk path against a deliver.delay() loop.

    Medians of ``runs`` runs each: one run is about a second, and the machine is noisy.
    """
    client = redis.Redis.from_url(os.environ["WEBHOOKS_REDIS_URL"])
    events = [one_kb_event(n) for n in range(count)]
    loop, bulk = [], []
    for _ in range(runs):
        client.flushdb()
        some = events[: max(1, count // runs)]  # the loop is slow; a share of the events
        start = time.perf_counter()
        for event in some:
            deliver.delay(rx.url("/b"), event)
        loop.append(len(some) / (time.perf_counter() - start))
        client.flushdb()
        start = time.perf_counter()
        deliver_many([(rx.url("/b"), event) for event in events])
        bulk.append(count / (time.perf_counter() - start))
    client.flushdb()
    return _row(
        "(b) enqueue, deliver_many vs deliver.delay loop (/s)",
        statistics.median(bulk),
        statistics.median(loop),
        "/s",
        ">= 5,000/s",
        runs=runs,
        bulk_runs=[round(rate) for rate in bulk],
        loop_runs=[round(rate) for rate in loop],
    )


def isolation(rx: FastReceiver, other: FastReceiver, fast: int, slow: int) -> Row:
    """(c) fast deliveries' completion with and without a slow (2 s) endpoint in the mix.

    The slow endpoint is ``other``, a receiver on another port: another destination,
    as another customer's endpoint would be.
    """
    with _worker():
        deliver_many([(rx.url("/c0"), one_kb_event(n)) for n in range(fast)])
        alone, _ = _wait_for(lambda: rx.count("c0"), fast, cap=300)
    with _worker():
        every = max(1, fast // slow)
        pairs: list[tuple[str, dict[str, Any]]] = []
        for n in range(fast):
            if n % every == 0 and len(pairs) - n < slow:
                pairs.append((other.url("/slow/c"), one_kb_event(n)))
            pairs.append((rx.url("/c1"), one_kb_event(n)))
        deliver_many(pairs)
        mixed, seen = _wait_for(lambda: rx.count("c1"), fast, cap=max(60, 10 * alone))
    return _row(
        "(c) isolation: all fast done, with 2 s endpoint vs without (s)",
        mixed,
        alone,
        "s",
        "<= 1.5x",
        fast_done=seen,
        fast=fast,
        slow=slow,
    )


def blackhole(rx: FastReceiver, other: FastReceiver, healthy: int) -> Row:
    """(d) the healthy half's throughput while a blackholed endpoint (``other``, another
    destination) takes the other half."""
    with _worker():
        deliver_many([(rx.url("/d0"), one_kb_event(n)) for n in range(healthy)])
        alone, _ = _wait_for(lambda: rx.count("d0"), healthy, cap=300)
    with _worker():
        pairs = [
            pair
            for n in range(healthy)
            for pair in (
                (other.url("/blackhole/d"), one_kb_event(n)),
                (rx.url("/d1"), one_kb_event(n)),
            )
        ]
        deliver_many(pairs)
        mixed, seen = _wait_for(lambda: rx.count("d1"), healthy, cap=max(30, 5 * alone))
    ours, baseline = seen / mixed, healthy / alone
    return _row(
        "(d) healthy throughput beside a blackhole (deliveries/s)",
        ours,
        baseline,
        "/s",
        ">= 0.7x",
        healthy_done=seen,
        healthy=healthy,
    )


def latency(rx: FastReceiver, rate: int, seconds: float) -> Row:
    """(e) enqueue-to-received latency at a steady rate."""
    sent: dict[str, float] = {}
    with _worker():
        time.sleep(1)
        start = time.time()
        for n in range(int(rate * seconds)):
            time.sleep(max(0.0, start + n / rate - time.time()))
            sent[deliver.delay(rx.url("/e"), one_kb_event(n)).id] = time.time()
        _wait_for(lambda: rx.count("e"), len(sent), cap=30)
        arrivals = {webhook_id: at for at, webhook_id in rx.stats().get("e", [])}
    waits = sorted((arrivals[i] - t) * 1000 for i, t in sent.items() if i in arrivals)
    p50 = statistics.median(waits)
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    row = _row(f"(e) latency at {rate}/s, p50 (ms)", p50, None, "ms", "p50 <= 25 ms")
    return {
        **row,
        "baseline": f"p99 {p99:,.1f} ms",
        "target": "p50 <= 25, p99 <= 150 ms",
        "values": {**row["values"], "p99": p99, "count": len(waits)},
    }


def waiting(count: int) -> Row:
    """(f) Redis bytes and worker RSS per waiting retry."""
    from bench.waiting import measure

    figures = measure(count)
    row = _row(
        f"(f) {count:,} waiting retries: Redis bytes each (parked entry)",
        figures["schedule_bytes_each"],
        None,
        "B",
        "<= 1 KB, RSS flat",
    )
    return {
        **row,
        "baseline": f"RSS {figures['rss_bytes_each']:+.1f} B each",
        "values": {**row["values"], **figures},
    }


def tenants(few: int, many: int) -> Row:
    """(g) Redis commands and bytes read by one publish, among few tenants and many."""
    from bench.tenants import publish_cost

    small, large = publish_cost(few), publish_cost(many)
    row = _row(
        f"(g) one publish among {many:,} tenants vs {few:,}: Redis commands",
        float(large["calls"]),
        float(small["calls"]),
        "",
        "flat",
    )
    return {
        **row,
        "baseline": f"{small['calls']:.0f} ({small['bytes']:,.0f} B)",
        "ours": f"{large['calls']:.0f} ({large['bytes']:,.0f} B)",
        "values": {**row["values"], "few": small, "many": large},
    }


def in_own_process(module: str, *args: object, timeout: float) -> Any:
    """Run ``python -m module *args --json`` in a process of its own (its settings are
    read once per process) and return the JSON of its last line."""
    done = subprocess.run(
        [sys.executable, "-m", module, *map(str, args), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def redis_cost(count: int, idle_seconds: float, turns: int = 1) -> Row:
    """(i) Redis commands and CPU per delivery, first try and retried once, on a Redis
    server of its own (see bench/capacity.py): the turn of the median first-try CPU of
    ``turns``."""
    figures = in_own_process(
        "bench.capacity",
        "--count",
        count,
        "--idle",
        idle_seconds,
        "--turns",
        turns,
        timeout=600 * turns,
    )
    first, retried = figures["first_try"], figures["retried_once"]
    row = _row(
        "(i) Redis CPU per delivery, first try (ms; commands in the target column)",
        first["cpu_ms"],
        retried["cpu_ms"],
        "ms",
        "",
    )
    each = [format(turn["first_try"], ".3f") for turn in figures["turns"]]
    median = f" (median of {', '.join(each)})"
    return {
        **row,
        "baseline": f"retried once: {retried['cpu_ms']:.3f} ms",
        "ours": f"{first['cpu_ms']:.3f} ms" + (median if len(each) > 1 else ""),
        "ratio": "",
        "target": f"{first['commands']} / {retried['commands']} commands",
        "values": {**row["values"], **figures},
    }


def brokers(count: int, turns: int = 3) -> Row:
    """(j) end-to-end throughput with RabbitMQ as the broker, against Redis, in turns
    (Redis, RabbitMQ, Redis; the baseline is the two Redis runs' mean), each in a
    process of its own (bench/brokers.py). The tiny size's 2 turns (Redis, RabbitMQ)
    only show that both run."""

    def rate(broker: str) -> float:
        figures = in_own_process("bench.brokers", "--broker", broker, "--count", count, timeout=600)
        return float(figures["rate"])

    name = "(j) throughput, RabbitMQ broker vs Redis broker (deliveries/s)"
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=2):
            pass
    except OSError:
        return _row(name, 0.0, None, "/s", "no RabbitMQ at 127.0.0.1:5672: not measured")
    before = rate("redis")
    amqp = rate("amqp")
    after = rate("redis") if turns > 2 else before
    return _row(
        name, amqp, (before + after) / 2, "/s", "reported", redis_before=before, redis_after=after
    )


def engines(count: int, seconds: float, idle_seconds: float) -> Row:
    """(k) this project against the bare loop and the naive Celery task (ack emulation
    on and off), each draining ``count`` queued deliveries, with Redis CPU and round
    trips per delivery: bench/engines.py, in a process of its own."""
    figures = in_own_process(
        "bench.engines",
        "--count",
        count,
        "--seconds",
        seconds,
        "--idle",
        idle_seconds,
        timeout=900,
    )
    runs, bare = figures["runs"], figures["bare_loop"]["mean"]
    ours, naive = runs["this project"], runs["naive task, ack emulation off"]
    row = _row(
        "(k) draining queued deliveries vs the bare loop (deliveries/s)",
        ours["rate"],
        bare,
        "/s",
        ">= 0.8x, >= naive off",
        **figures,
    )
    return {
        **row,
        "target": f"{row['target']} (naive off: {naive['ratio']:.2f}x; Redis "
        f"{ours['redis_cpu_ms']:.3f} ms, {ours['round_trips']:.1f} round trips)",
    }


def run_all(size: dict[str, Any]) -> list[Row]:
    rows = []
    with FastReceiver() as rx, FastReceiver() as other:
        rows.append(enqueue_rate(rx, size["b"]))
        rows.append(throughput(rx, size["a"]))
        rows.append(latency(rx, *size["e"]))
        rows.append(isolation(rx, other, *size["c"]))
        rows.append(blackhole(rx, other, size["d"]))
        rows.append(metrics_cost(rx, size["a"], turns=size["h"]))
    rows.append(waiting(size["f"]))
    rows.append(tenants(*size["g"]))
    rows.append(redis_cost(*size["i"]))
    rows.append(brokers(*size["j"]))
    rows.append(engines(*size["k"]))
    return rows
