"""What one attempt costs the process that makes it: CPU per call, in one thread.

    python -m bench.attempt [--count 3000] [--rounds 3]

Against the bench's receiver on loopback (its own process), one thread calls each
of these ``--count`` times in turn, ``--rounds`` times, and reads its own CPU time
(``time.process_time``) around each batch:

- ``requests.Session.post``: what the bare loop of ``bench.engines`` does;
- urllib3's pool, called directly, as requests' adapter calls it inside;
- ``Sender.attempt``: this project's attempt (guard, deadline, headers, the answer
  read within its bound), without a signing secret, as a bare URL's;
- ``run_attempt``: a whole run of a queued delivery, its claim and its record in
  Redis included (as a pool process makes a run, without Celery around it).

Prints each one's median CPU per call, and the rounds. The figures vary with the
machine's load: compare the lines of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any
from urllib.parse import urlsplit

os.environ.setdefault("WEBHOOKS_REDIS_URL", "redis://127.0.0.1:6379/11")
os.environ["WEBHOOKS_ALLOWED_NETWORKS"] = "127.0.0.0/8"
os.environ["WEBHOOKS_KEY_PREFIX"] = f"bench-attempt-{os.getpid()}"  # its own keys

import requests
import urllib3

from bench import scenarios
from bench.receiver import FastReceiver
from webhooks.dev.redis_server import ensure_redis


def _timed(call: Callable[[], object], count: int) -> float:
    """CPU milliseconds per call of ``call``, over ``count`` calls."""
    start = time.process_time()
    for _ in range(count):
        call()
    return (time.process_time() - start) * 1000 / count


def _run_next(system: Any, ids: Iterator[str]) -> None:
    from webhooks.worker.runner import Done, RunResult, run_attempt

    step = run_attempt(system, next(ids), 0, 0)
    if step != Done(RunResult.DELIVERED):
        raise RuntimeError(f"a run of the bench was not delivered: {step}")


def measure(count: int, rounds: int) -> dict[str, list[float]]:
    # Imported now: the default System is built from the environment above.
    from webhooks.producer import Producer
    from webhooks.system import get_default

    system = get_default()
    body = json.dumps(scenarios.one_kb_event()).encode()
    headers = {"Content-Type": "application/json"}
    figures: dict[str, list[float]] = {}
    with FastReceiver() as rx, requests.Session() as session:
        session.trust_env = False
        url = rx.url("/attempt")
        parts = urlsplit(url)
        pool = urllib3.HTTPConnectionPool(parts.hostname or "", parts.port, maxsize=1)
        producer, queue = Producer(system), system.settings.key_prefix

        def queued(n: int, first: int) -> list[str]:
            # Events of their own (creating is idempotent), on a queue no worker reads.
            return [
                producer.deliver_one(url, scenarios.one_kb_event(number), queue=queue)
                for number in range(first, first + n)
            ]

        def bare() -> None:
            session.post(url, data=body, headers=headers).close()

        def direct() -> None:
            answer = pool.urlopen(
                "POST", parts.path, body=body, headers=headers, preload_content=False,
                decode_content=False, retries=False, redirect=False, assert_same_host=False,
            )  # fmt: skip
            answer.read1(1024)
            answer.release_conn()

        def ours() -> None:
            system.sender.attempt("msg_bench", 1, url, body, [])

        try:
            for turn in range(rounds):
                for name, call in (
                    ("requests.Session.post (the bare loop)", bare),
                    ("urllib3's pool, directly", direct),
                    ("Sender.attempt", ours),
                ):
                    for _ in range(count // 10):  # connections opened, caches warm
                        call()
                    figures.setdefault(name, []).append(_timed(call, count))
                figures.setdefault("run_attempt (claim, attempt, record)", []).append(
                    _timed(partial(_run_next, system, iter(queued(count, turn * count))), count)
                )
        finally:
            prefix = system.settings.key_prefix
            for key in system.redis.scan_iter(f"{prefix}:*", count=1000):
                system.redis.delete(key)
            system.redis.delete(prefix)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attempt")
    parser.add_argument("--count", type=int, default=3000, help="calls of each, per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with ensure_redis(os.environ["WEBHOOKS_REDIS_URL"]):
        figures = measure(args.count, args.rounds)
    print(f"CPU per call, median of {args.rounds} rounds of {args.count:,} (rounds in brackets)")
    for name, rounds in figures.items():
        shown = ", ".join(f"{value:.3f}" for value in rounds)
        print(f"  {statistics.median(rounds):.3f} ms  {name}  [{shown}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
