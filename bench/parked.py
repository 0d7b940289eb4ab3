"""What a blackhole's parked deliveries cost while its circuit is open.

    python -m bench.parked [--count 1000] [--json]

A worker started with the Procfile's command, with a 3 s attempt timeout and a
breaker that opens at 4 failures (or 0.5 s of stalled attempts) for 1 s. A
blackhole (the benchmarks' receiver's ``/blackhole``) is sent 8 deliveries and
left 4.5 s, time enough for its circuit to open; then ``--count`` more. After 3 s
of settling, Redis script calls (EVALSHA: two per message a worker runs) are
counted over 5 s; then ``--count`` healthy deliveries are sent and their rate
taken, against ``--count`` sent alone to a worker of the same settings. Scenario
(d) of ``python -m bench`` sends both halves at once, before anything can know
the blackhole; this measures what follows.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

os.environ.setdefault("WEBHOOKS_REDIS_URL", "redis://127.0.0.1:6379/11")
os.environ["WEBHOOKS_ALLOWED_NETWORKS"] = "127.0.0.0/8"  # the receivers are on loopback

ENV = {
    "WEBHOOKS_TIMEOUT_SECONDS": "3",
    "WEBHOOKS_BREAKER_FAILURES": "4",
    "WEBHOOKS_BREAKER_COOLDOWN_SECONDS": "1",
    "WEBHOOKS_BREAKER_STALLED_SECONDS": "0.5",
}


def measure(count: int) -> dict[str, Any]:
    import redis

    from bench.receiver import FastReceiver
    from bench.scenarios import _wait_for, _worker, one_kb_event
    from webhooks import deliver_many

    client = redis.Redis.from_url(os.environ["WEBHOOKS_REDIS_URL"])

    def script_calls() -> int:
        stats: dict[str, Any] = client.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    with FastReceiver() as rx, FastReceiver() as other:
        with _worker(env=ENV):
            deliver_many([(rx.url("/alone"), one_kb_event(n)) for n in range(count)])
            alone, _ = _wait_for(lambda: rx.count("alone"), count, cap=300)
        with _worker(env=ENV):
            blackhole = other.url("/blackhole/parked")
            deliver_many([(blackhole, one_kb_event(n)) for n in range(8)])
            time.sleep(4.5)  # its circuit opens: 4 attempts time out, or stall
            deliver_many([(blackhole, one_kb_event(n)) for n in range(count)])
            time.sleep(3)
            start = script_calls()
            time.sleep(5)
            calls = (script_calls() - start) / 5
            deliver_many([(rx.url("/beside"), one_kb_event(n)) for n in range(count)])
            beside, seen = _wait_for(lambda: rx.count("beside"), count, cap=300)
            sent_to_blackhole = other.count("blackhole")
    return {
        "script_calls_per_second": round(calls, 1),
        "healthy_alone_per_second": round(count / alone, 1),
        "healthy_beside_per_second": round(seen / beside, 1),
        "blackhole_requests": sent_to_blackhole,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parked")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="one JSON line")
    args = parser.parse_args()
    from bench.scenarios import report  # after the settings above

    return report(lambda: measure(args.count), args.json, 28)


if __name__ == "__main__":
    raise SystemExit(main())
