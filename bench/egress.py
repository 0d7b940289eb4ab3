"""What WEBHOOKS_EGRESS_PROXY costs: attempts with and without a forward proxy, same run.

    python -m bench.egress [--attempts 400] [--count 2000] [--rounds 3]

Needs Debian's ``tinyproxy`` (``apt-get install tinyproxy``), started on loopback.

- **Latency per attempt**, one Sender in this process against the fast receiver:
  on a kept-alive connection (the tunnel stays open between attempts, as a worker's
  does to a busy destination), and on a new connection each time (a new tunnel: one
  CONNECT round trip more, as for a destination seen rarely).
- **Deliveries per second** through a worker started as the Procfile starts it,
  without the proxy and with it, and the CPU time each delivery cost the worker (its
  processes together) and tinyproxy: steadier than the rate on a shared machine.

Each is measured in rounds, without and with the proxy in turn, every figure printed:
drift in the machine's load shows, and hits both sides.

Uses Redis database 10 of WEBHOOKS_REDIS_URL's server (flushed before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("WEBHOOKS_REDIS_URL", "redis://127.0.0.1:6379/10")
os.environ.setdefault("WEBHOOKS_ALLOWED_NETWORKS", "127.0.0.0/8")  # the receiver's

from bench.profile import _children, cpu_seconds
from bench.receiver import FastReceiver
from bench.scenarios import _end_to_end, _worker, one_kb_event
from webhooks.dev.forward_proxy import ForwardProxy
from webhooks.dev.redis_server import ensure_redis
from webhooks.sending.attempt import Sender
from webhooks.settings import Settings


def attempt_latencies(rx: FastReceiver, proxy: str | None, attempts: int) -> dict[str, float]:
    """p50 and p99 milliseconds per attempt, kept-alive and on a new connection each."""
    settings = Settings(allowed_networks="127.0.0.0/8", egress_proxy=proxy)
    body = json.dumps(one_kb_event()).encode()
    figures: dict[str, float] = {}
    for reuse in (True, False):
        sender = Sender(settings)
        times = []
        for n in range(attempts + 10):
            if not reuse:
                sender = Sender(settings)  # a session of its own: a new connection
            start = time.perf_counter()
            outcome = sender.attempt(f"msg_{n}", 1, rx.url("/fast/latency"), body, [])
            took = (time.perf_counter() - start) * 1000
            if not outcome.attempt.succeeded:
                raise RuntimeError(f"an attempt failed: {outcome.attempt.error}")
            if n >= 10:  # the first few warm up the process and the connection
                times.append(took)
        quantiles = statistics.quantiles(times, n=100)
        name = "kept" if reuse else "new"
        figures[f"{name}_p50"], figures[f"{name}_p99"] = quantiles[49], quantiles[98]
    return figures


def main(attempts: int, count: int, rounds: int) -> None:
    url = os.environ["WEBHOOKS_REDIS_URL"]
    ways = (("direct", None), ("through tinyproxy", "proxy"))
    with ensure_redis(url), FastReceiver() as rx, ForwardProxy() as proxy:
        print(f"latency per attempt, {rounds} rounds of {attempts} attempts, one thread (ms)")
        print(f"  {'':24} {'kept-alive p50':>14} {'p99':>7} {'new conn p50':>13} {'p99':>7}")
        for _ in range(rounds):  # alternated, so that drift in the load hits both
            for name, through in ways:
                f = attempt_latencies(rx, proxy.url if through else None, attempts)
                print(
                    f"  {name:24} {f['kept_p50']:14.2f} {f['kept_p99']:7.2f} "
                    f"{f['new_p50']:13.2f} {f['new_p99']:7.2f}"
                )
        print(
            f"deliveries/s and CPU per delivery, {count} deliveries a run, the Procfile's "
            "worker (8 processes)"
        )
        print(f"  {'':24} {'deliveries/s':>12} {'worker CPU':>11} {'proxy CPU':>10}")
        for turn in range(rounds):
            for name, through in ways:
                env = {"WEBHOOKS_EGRESS_PROXY": proxy.url} if through else {}
                with _worker(env=env) as worker:
                    time.sleep(1)
                    tree = [worker.pid, *_children(worker.pid)]
                    before = sum(cpu_seconds(pid) for pid in tree)
                    proxy_before = cpu_seconds(proxy.pid) if proxy.pid else 0.0
                    rate = _end_to_end(rx, count, f"{through or 'direct'}{turn}")
                    worker_ms = (sum(cpu_seconds(pid) for pid in tree) - before) * 1000 / count
                    proxy_ms = (
                        (cpu_seconds(proxy.pid) - proxy_before) * 1000 / count if proxy.pid else 0
                    )
                print(f"  {name:24} {rate:12.0f} {worker_ms:8.2f} ms {proxy_ms:7.2f} ms")
        if proxy.connections() <= 1:  # its own start-up probe
            print("the proxy saw no attempt: its runs did not go through it", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=400)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    main(options.attempts, options.count, options.rounds)
