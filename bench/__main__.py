"""Run every benchmark scenario against a local Redis and local receivers.

    python -m bench [--size tiny|full] [--json PATH]

Each comparison runs in this one process run, next to its baseline, and is
reported as a ratio: the machine is shared and noisy, so absolute figures from
different runs do not compare. The worker is started with the Procfile's
command, so what is measured is what production runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("WEBHOOKS_REDIS_URL", "redis://127.0.0.1:6379/11")
os.environ["WEBHOOKS_ALLOWED_NETWORKS"] = "127.0.0.0/8"  # the receivers are on loopback

from bench import scenarios  # noqa: E402
from webhooks.dev.redis_server import ensure_redis  # noqa: E402

SIZES = {
    "tiny": {
        "a": 30,
        "b": 50,
        "c": (40, 4),
        "d": 20,
        "e": (20, 1.0),
        "f": 2000,
        "g": (10, 100),
        "h": 2,
        "i": (30, 1.0),
        "j": (30, 2),
        "k": (100, 0.5, 0.5),
    },
    "full": {
        "a": 3000,
        "b": 5000,
        "c": (2000, 200),
        "d": 1000,
        "e": (100, 10.0),
        "f": 100_000,
        "g": (10, 10_000),
        "h": 8,
        "i": (1000, 3.0, 3),
        "j": (3000, 3),
        "k": (3000, 4.0, 2.0),
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args()
    size = SIZES[args.size]
    started = time.time()
    with ensure_redis(os.environ["WEBHOOKS_REDIS_URL"]):
        rows = scenarios.run_all(size)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        "size": args.size,
        "seconds": round(time.time() - started, 1),
        "scenarios": rows,
    }
    print(f"\n{report['date']}  {report['machine']}  size={args.size}")
    print(f"{'scenario':<58} {'ours':>12} {'baseline':>12} {'ratio':>7}  target")
    for row in rows:
        print(
            f"{row['name']:<58} {row['ours']:>12} {row['baseline']:>12} "
            f"{row['ratio']:>7}  {row['target']}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
