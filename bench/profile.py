"""Where scenario (a)'s CPU goes: per process, and (with py-spy) per function.

    python -m bench.profile [--count 3000] [--no-spy] [--broker redis|amqp]

Runs the production worker command against a local fast receiver, like scenario
(a), and reads every process's CPU time from /proc before and after: the worker's
main process (fetch, dispatch, acknowledge), its pool processes (the task), Redis,
RabbitMQ with ``--broker amqp`` (scenario (j)'s broker, WEBHOOKS_BENCH_AMQP), and
this process (producer and receiver). With py-spy installed (it is in the dev
extra), it also samples the worker's main process and one pool process and prints
the functions that take the most of their samples. Prints a figure per delivery.

The processes are the ones this run started, found by their ids (the worker's,
its pool's as its children, Redis's as it reports it), never by name: the machine
may run other workers and servers at the same time.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("WEBHOOKS_REDIS_URL", "redis://127.0.0.1:6379/11")
os.environ["WEBHOOKS_ALLOWED_NETWORKS"] = "127.0.0.0/8"

import redis

from bench import scenarios
from bench.brokers import AMQP
from bench.receiver import FastReceiver
from webhooks.dev.redis_server import ensure_redis
from webhooks.dev.worker import kill_worker, start_worker

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _children(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def _listening(port: int) -> list[int]:
    """The process listening on a loopback TCP port, when this user may see it."""
    found = subprocess.run(
        ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=False
    )
    return sorted({int(pid) for pid in re.findall(r"pid=(\d+)", found.stdout)})


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
    parser.add_argument("--broker", choices=["redis", "amqp"], default="redis")
    args = parser.parse_args()
    beside = Path(sys.executable).with_name("py-spy")  # in the venv, if not on PATH
    spy = (
        None
        if args.no_spy
        else shutil.which("py-spy") or (str(beside) if beside.exists() else None)
    )
    report: dict[str, object] = {}
    prefix = f"profile-{args.broker}-{os.getpid()}"  # its own queue and keys
    env = {
        "WEBHOOKS_KEY_PREFIX": prefix,
        **({"WEBHOOKS_BROKER_URL": AMQP} if args.broker == "amqp" else {}),
    }
    os.environ.update(env)
    # Imported now: the default System is built from the environment above.
    from webhooks import deliver_many

    with (
        ensure_redis(os.environ["WEBHOOKS_REDIS_URL"]),
        FastReceiver() as rx,
        tempfile.TemporaryDirectory() as tmp,
    ):
        store = redis.Redis.from_url(os.environ["WEBHOOKS_REDIS_URL"])
        # A node name of its own: on RabbitMQ a worker's control queue is exclusive to it.
        worker = start_worker(
            Path(tmp) / "worker.log", env, *scenarios.procfile_worker(), f"--hostname={prefix}@%h"
        )
        try:
            _profile(args, spy, Path(tmp), worker.pid, store, rx, deliver_many, report)
        finally:
            kill_worker(worker)
            for key in store.scan_iter(f"{prefix}:*"):
                store.delete(key)
            if args.broker == "amqp":
                _delete_queue(prefix)
    print(json.dumps({"deliveries_per_second": report.pop("rate"), "cpu_ms": report}))
    return 0


def _delete_queue(name: str) -> None:
    from kombu import Connection

    with Connection(AMQP) as connection:
        channel: Any = connection.default_channel  # kombu types it as the abstract channel
        channel.queue_delete(name)
        channel.exchange_delete(name)


def _profile(
    args: argparse.Namespace,
    spy: str | None,
    tmp: Path,
    main_pid: int,
    store: redis.Redis,
    rx: FastReceiver,
    deliver_many: Any,
    report: dict[str, object],
) -> None:
    """Deliver ``args.count`` events with the worker ``main_pid`` running; print and
    fill ``report`` with each process's CPU per delivery and the rate."""
    pool = _children(main_pid)
    receiver = [p for p in _children(os.getpid()) if p != main_pid]  # forked by rx
    roles = {
        "worker main process": [main_pid],
        "worker pool processes": pool,
        "redis-server": [int(store.info("server")["process_id"])],
        "receiver": receiver,
        "producer (deliver_many)": [os.getpid()],
    }
    if args.broker == "amqp":
        roles["rabbitmq"] = _listening(int(AMQP.rpartition(":")[2].split("/")[0]))
    spies = []
    if spy:
        for name, pid in (("main", main_pid), ("pool", pool[0])):
            out = tmp / f"{name}.txt"
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
    report["rate"] = round(seen / elapsed, 1)


if __name__ == "__main__":
    raise SystemExit(main())
