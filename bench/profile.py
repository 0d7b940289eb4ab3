"""Where scenario (a)'s CPU goes: per process, and (with py-spy) per function.

    python -m bench.profile [--count 3000] [--no-spy]

Runs the production worker command against a local fast receiver, like scenario
(a), and reads every process's CPU time from /proc before and after: the worker's
main process (fetch, dispatch, acknowledge), its pool processes (the task), Redis,
and this process (producer and receiver). With py-spy installed (it is in the dev
extra), it also samples the worker's main process and one pool process and prints
the functions that take the most of their samples. Prints a figure per delivery.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WEBHOOKS_REDIS_URL", "redis://127.0.0.1:6379/11")
os.environ["WEBHOOKS_ALLOWED_NETWORKS"] = "127.0.0.0/8"

from bench import scenarios
from bench.receiver import FastReceiver
from webhooks import deliver_many
from webhooks.dev.redis_server import ensure_redis

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _pgrep(*args: str) -> list[int]:
    found = subprocess.run(["pgrep", *args], capture_output=True, text=True)
    return [int(word) for word in found.stdout.split()]


def _children(pid: int) -> list[int]:
    return _pgrep("-P", str(pid))


def _top(raw: Path, count: int) -> list[tuple[float, str]]:
    """The functions found in the most sampled stacks (their callees included), as
    shares of the busy samples; the frames every stack starts with are left out."""
    within: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = stack.split(";")
        if "threading.py" in frames[-1] or "Event.wait" in stack:
            continue  # threads waiting for work
        total += int(samples)
        for frame in set(frames):
            within[frame] += int(samples)
    shares = [(100 * n / max(total, 1), frame) for frame, n in within.most_common()]
    return [(share, frame) for share, frame in shares if share < 90][:count]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--no-spy", action="store_true")
    args = parser.parse_args()
    beside = Path(sys.executable).with_name("py-spy")  # in the venv, if not on PATH
    spy = (
        None
        if args.no_spy
        else shutil.which("py-spy") or (str(beside) if beside.exists() else None)
    )
    report: dict[str, object] = {}
    with (
        ensure_redis(os.environ["WEBHOOKS_REDIS_URL"]),
        FastReceiver() as rx,
        tempfile.TemporaryDirectory() as tmp,
        scenarios._worker(),
    ):
        main_pid = max(pid for pid in _pgrep("-f", "celery -A webhooks worker") if _children(pid))
        pool = _children(main_pid)
        receiver = [p for p in _children(os.getpid()) if p != main_pid]  # forked by rx
        roles = {
            "worker main process": [main_pid],
            "worker pool processes": pool,
            "redis-server": _pgrep("-f", "redis-server"),
            "receiver": receiver,
            "producer (deliver_many)": [os.getpid()],
        }
        spies = []
        if spy:
            for name, pid in (("main", main_pid), ("pool", pool[0])):
                out = Path(tmp) / f"{name}.txt"
                spies.append(
                    (
                        name,
                        out,
                        subprocess.Popen(
                            [
                                spy,
                                "record",
                                "--nonblocking",
                                "-p",
                                str(pid),
                                "-r",
                                "100",
                                "-f",
                                "raw",
                                "-o",
                                str(out),
                            ],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                        ),
                    )
                )
            time.sleep(1)
        before = {name: sum(cpu_seconds(p) for p in pids) for name, pids in roles.items()}
        start = time.perf_counter()
        deliver_many([(rx.url("/p"), scenarios.one_kb_event(n)) for n in range(args.count)])
        _, seen = scenarios._wait_for(lambda: rx.count("p"), args.count, cap=300)
        elapsed = time.perf_counter() - start
        after = {name: sum(cpu_seconds(p) for p in pids) for name, pids in roles.items()}
        for _, _, process in spies:
            process.send_signal(2)  # py-spy writes its file on SIGINT
            process.wait(timeout=30)
        print(f"{seen} deliveries in {elapsed:.1f} s: {seen / elapsed:,.1f}/s\n")
        print("CPU per delivery (ms):")
        for name in roles:
            share = (after[name] - before[name]) * 1000 / max(seen, 1)
            report[name] = round(share, 3)
            print(f"  {share:7.3f}  {name}")
        for name, out, _ in spies:
            if out.exists():
                print(f"\nworker {name} process: functions in the most samples")
                for share, frame in _top(out, 25):
                    print(f"  {share:5.1f}%  {frame}")
    print(json.dumps({"deliveries_per_second": round(seen / elapsed, 1), "cpu_ms": report}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
