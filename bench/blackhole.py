"""Scenario (d) on its own: a healthy half beside a blackholed endpoint, both sent at once.

    python -m bench.blackhole [--count 1000] [--margin N|off] [--json]

``python -m bench``'s scenario (d) (bench/scenarios.py ``blackhole``): ``--count``
deliveries to a fast receiver drained alone by a fresh worker, then ``--count`` to
it and ``--count`` to a blackhole (the benchmarks' receiver's ``/blackhole``, which
never answers) interleaved in one ``deliver_many``, drained by another; the ratio is
the healthy half's rate beside the blackhole over its rate alone. Also printed:
Redis script calls (EVALSHA) per healthy delivery in the mixed run, which counts
the message cycles spent on runs set aside. ``--margin`` sets
``WEBHOOKS_DESTINATION_ADMISSION_MARGIN`` for the producer and the workers
(``off``: no admission at publish, every first run published at once).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

os.environ.setdefault("WEBHOOKS_REDIS_URL", "redis://127.0.0.1:6379/11")
os.environ["WEBHOOKS_ALLOWED_NETWORKS"] = "127.0.0.0/8"  # the receivers are on loopback


def measure(count: int) -> dict[str, Any]:
    import redis

    from bench.receiver import FastReceiver
    from bench.scenarios import blackhole

    client = redis.Redis.from_url(os.environ["WEBHOOKS_REDIS_URL"])
    calls_before = int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    with FastReceiver() as rx, FastReceiver() as other:
        row = blackhole(rx, other, count)
    calls = int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    values = row["values"]
    return {
        "ratio": round(values["ours"] / values["baseline"], 3),
        "beside_per_second": round(values["ours"], 1),
        "alone_per_second": round(values["baseline"], 1),
        "healthy_done": values["healthy_done"],
        "script_calls_per_healthy_delivery": round((calls - calls_before) / (2 * count), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.blackhole")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--margin", default=None, help="admission margin, or 'off'")
    parser.add_argument("--json", action="store_true", help="one JSON line")
    args = parser.parse_args()
    if args.margin is not None:
        margin = "" if args.margin == "off" else str(int(args.margin))
        os.environ["WEBHOOKS_DESTINATION_ADMISSION_MARGIN"] = margin
    from bench.scenarios import report  # after the settings above

    return report(lambda: measure(args.count), args.json, 36)


if __name__ == "__main__":
    raise SystemExit(main())
