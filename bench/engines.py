"""This project against the engine it is built on, side by side in one run.

    python -m bench.engines [--count 3000] [--seconds 4] [--rounds 1] [--pools] [--json]

- **bare loop**: one ``requests.Session`` POSTing to the receiver for ``--seconds``,
  at the start of the run and again at its end; the baseline is their mean.
- **naive task, ack emulation on / off**: bench/naive.py, the design card's task
  with Celery's defaults, with kombu's ack emulation on (its default) and off.
- **this project, ack emulation on**: the Procfile's worker with kombu's ack
  emulation turned back on by a ``CELERY_CONFIG_MODULE`` (the design before
  issue 24).
- **this project, pool processes not taking runs**: the same with
  ``WEBHOOKS_DRAIN_RUNS=0``: every run comes through the worker's own fetch and
  prefork's hand-over (the design before a pool process took runs itself).
- **this project**: the Procfile's worker as configured.
- with ``--pools``, **this project** again with the threads pool (16 threads) and
  with the solo pool, instead of prefork.

Each worker run drains ``--count`` deliveries queued before a fresh worker starts,
to the benchmarks' asyncio receiver; its rate is taken from the receiver's arrival
times (first to last POST), so the worker's start does not count. Per delivery,
the worker's CPU (its main and pool processes, from /proc, from the first POST
on), and from the Redis server's own counters, with an idle measure after each
drain taken out (``--idle``, 2 s): Redis CPU, commands (those run inside Lua
scripts and transactions included) and round trips (requests Redis read from its
clients: a pipeline, a transaction or a script call is one). Everything runs on
a Redis server of its own (the dev extra's), so nothing else is counted.

With ``--rounds N``, all of it is measured N times in turn, each round's ratios to
its own bare loop, and the rounds' medians printed last: the machine's speed drifts
by a third within minutes, and a ratio of runs a minute apart carries that drift.
Prints figures and decides nothing; ``python -m bench`` runs it as scenario (k).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import redis
import requests

from webhooks.dev.redis_server import RedisProcess, installed_server

ROOT = Path(__file__).resolve().parent.parent

# The same as the project's configuration, with kombu's ack emulation back on.
_ACK_EMULATION_ON = """\
from webhooks.broker.config import *  # noqa: F403
broker_transport_options = {**broker_transport_options, "ack_emulation": True}  # noqa: F405
"""


#: The project's worker as it was before its pool processes took runs off the queue.
_NOT_TAKING = {"WEBHOOKS_DRAIN_RUNS": "0"}


def _counters(client: redis.Redis) -> tuple[float, int, int]:
    """Redis CPU seconds, commands processed and reads from clients, so far."""
    cpu, stats = client.info("cpu"), client.info("stats")
    return (
        float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        int(stats["total_commands_processed"]),
        int(stats["total_reads_processed"]),
    )


def _rewrite_aof(client: redis.Redis) -> None:
    """Rewrite the AOF of the emptied server now: left to itself, Redis rewrites it once
    it has doubled, in a child process whose CPU, in whichever run it falls, slowed that
    run on two cores (the runs after the slowest one, which writes the most, by a fifth)."""
    client.bgrewriteaof()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        persistence = client.info("persistence")
        if not (persistence["aof_rewrite_in_progress"] or persistence["aof_rewrite_scheduled"]):
            return
        time.sleep(0.05)


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children: a worker and its pool."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / ticks
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += _tree_cpu(int(child))
    return total


def bare_loop(url: str, seconds: float) -> float:
    """Requests per second of one requests.Session POSTing for ``seconds``."""
    from bench.scenarios import one_kb_event

    body = json.dumps(one_kb_event()).encode()
    sent = 0
    with requests.Session() as session:
        session.trust_env = False
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            session.post(url, data=body, headers={"Content-Type": "application/json"})
            sent += 1
        return sent / (time.perf_counter() - start)


def drain(
    client: redis.Redis,
    rx: Any,
    kind: str,
    count: int,
    enqueue: Callable[[], None],
    start: Callable[[], subprocess.Popen[bytes]],
    idle_seconds: float,
) -> dict[str, Any]:
    """Queue ``count`` deliveries, start a worker, and measure it draining them; then
    ``idle_seconds`` of the idle worker, whose Redis traffic is taken out."""
    client.flushall()
    _rewrite_aof(client)
    enqueue()
    before = _counters(client)
    started = time.monotonic()
    worker = start()
    first: tuple[int, float] | None = None  # deliveries seen, and the worker's CPU, then
    try:
        while (seen := rx.count(kind)) < count and time.monotonic() < started + 300:
            if first is None and seen:
                first = (seen, _tree_cpu(worker.pid))  # its start's CPU left out
            time.sleep(0.05)
        drain_seconds = time.monotonic() - started
        after = _counters(client)
        worker_cpu = _tree_cpu(worker.pid)
        time.sleep(idle_seconds)
        idle = _counters(client)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # a warm shutdown of an idle worker waits 10 s
        worker.wait()
    arrivals = sorted(at for at, _ in rx.stats().get(kind, []))
    rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
    per = [
        ((a - b) - (i - a) / idle_seconds * drain_seconds) / max(seen, 1)
        for b, a, i in zip(before, after, idle, strict=True)
    ]
    seen_first, cpu_first = first or (0, worker_cpu)
    return {
        "rate": rate,
        "delivered": seen,
        "worker_cpu_ms": (worker_cpu - cpu_first) * 1000 / max(seen - seen_first, 1),
        "redis_cpu_ms": per[0] * 1000,
        "commands": per[1],
        "round_trips": per[2],
    }


def _spawn(log: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed with its pool
        )


#: With --pools: the project's worker with another pool than the Procfile's prefork
#: (Celery's last option wins), to weigh prefork's IPC against going without it.
POOLS = {
    "this project, --pool=threads --concurrency=16": ("--pool=threads", "--concurrency=16"),
    "this project, --pool=solo": ("--pool=solo",),
}


_T = TypeVar("_T")


def _in_turn(turn: int, items: list[_T]) -> list[_T]:
    """``items`` in the order round ``turn`` runs them: as listed, or (every other round)
    reversed."""
    return items if turn % 2 == 0 else items[::-1]


def measure(
    count: int, seconds: float, pools: bool = False, idle_seconds: float = 2.0, rounds: int = 1
) -> dict[str, Any]:
    """``rounds`` times in turn: the bare loop, the naive task (ack emulation on and off),
    this project (ack emulation on, and as configured; with ``pools``, also with the
    threads and solo pools), the bare loop again; rates and Redis costs. Each round's
    ratios are to its own bare loop; the figures at the top are the rounds' medians."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisProcess(Path(tmp), binary=installed_server()) as server,
    ):
        store = server.url.rsplit("/", 1)[0] + "/0"
        os.environ.update(
            WEBHOOKS_REDIS_URL=store,
            WEBHOOKS_ALLOWED_NETWORKS="127.0.0.0/8",
            NAIVE_BROKER_URL=store,
        )
        # Imported now: the apps read the environment above once.
        from bench.naive import deliver as naive_deliver
        from bench.receiver import FastReceiver
        from bench.scenarios import one_kb_event, procfile_worker
        from webhooks import deliver_many
        from webhooks.dev.worker import start_worker

        client = redis.Redis.from_url(store)
        (Path(tmp) / "ack_emulation_on.py").write_text(_ACK_EMULATION_ON)
        measured: list[dict[str, Any]] = []
        with FastReceiver() as rx:

            def queue_naive(kind: str) -> None:
                with naive_deliver.app.producer_or_acquire() as producer:
                    for n in range(count):
                        naive_deliver.apply_async(
                            (rx.url(f"/{kind}"), json.dumps(one_kb_event(n))), producer=producer
                        )

            def start_naive(kind: str, emulation: str) -> subprocess.Popen[bytes]:
                env = {"NAIVE_ACK_EMULATION": emulation}
                return _spawn(Path(tmp) / f"{kind}.log", env, "-A", "bench.naive", "worker")

            def queue_ours(kind: str) -> None:
                deliver_many([(rx.url(f"/{kind}"), one_kb_event(n)) for n in range(count)])

            def start_ours(kind: str, env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
                env = {"WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8", **env}
                return start_worker(Path(tmp) / f"{kind}.log", env, *procfile_worker(), *extra)

            emulated = {"CELERY_CONFIG_MODULE": "ack_emulation_on", "PYTHONPATH": f"{tmp}:{ROOT}"}
            for turn in range(rounds):
                bare_before = bare_loop(rx.url(f"/bare{turn}a"), seconds)
                workers: list[tuple[str, str, Callable[[], None], Callable[[], Any]]] = [
                    (name, kind, partial(queue_naive, kind), partial(start_naive, kind, emulation))
                    for name, kind, emulation in (
                        ("naive task, ack emulation on", f"naive1-{turn}", "1"),
                        ("naive task, ack emulation off", f"naive0-{turn}", "0"),
                    )
                ]
                workers += [
                    (name, kind, partial(queue_ours, kind), partial(start_ours, kind, env, *extra))
                    for name, kind, env, extra in (
                        ("this project, ack emulation on", f"ours1-{turn}", emulated, ()),
                        (
                            "this project, pool processes not taking runs",
                            f"ours0-{turn}",
                            _NOT_TAKING,
                            (),
                        ),
                        ("this project", f"ours-{turn}", {}, ()),
                        *(
                            (name, f"pool{number}-{turn}", {}, extra)
                            for number, (name, extra) in enumerate(POOLS.items() if pools else ())
                        ),
                    )
                ]
                # Every other round runs them in the reverse order: the machine's speed
                # drifts within a round, and no worker should always come last.
                drained = {
                    name: drain(client, rx, kind, count, queue, start, idle_seconds)
                    for name, kind, queue, start in _in_turn(turn, workers)
                }
                runs = {name: drained[name] for name, *_ in workers}  # in the listed order
                bare_after = bare_loop(rx.url(f"/bare{turn}b"), seconds)
                bare = (bare_before + bare_after) / 2
                naive_off = runs["naive task, ack emulation off"]["rate"]
                for run in runs.values():
                    run["ratio"] = run["rate"] / bare
                    run["vs_naive_off"] = run["rate"] / naive_off
                measured.append(
                    {
                        "bare_loop": {"before": bare_before, "after": bare_after, "mean": bare},
                        "runs": runs,
                    }
                )
    medians = {
        name: {
            figure: statistics.median(turn["runs"][name][figure] for turn in measured)
            for figure in measured[0]["runs"][name]
        }
        for name in measured[0]["runs"]
    }
    return {
        "count": count,
        "bare_loop": {
            part: statistics.median(turn["bare_loop"][part] for turn in measured)
            for part in ("before", "after", "mean")
        },
        "runs": medians,
        "rounds": measured,
    }


def _table(figures: dict[str, Any], count: int) -> None:
    bare = figures["bare_loop"]
    print(
        f"bare loop: {bare['before']:,.1f}/s at the start, {bare['after']:,.1f}/s at the end"
        f" (baseline: their mean, {bare['mean']:,.1f}/s)"
    )
    print(
        f"{'draining ' + format(count, ',') + ' queued deliveries':<46} {'rate':>10} "
        f"{'vs bare':>8} {'vs naive off':>13} {'worker CPU':>11} {'Redis CPU':>10} "
        f"{'commands':>9} {'round trips':>12}"
    )
    for name, run in figures["runs"].items():
        print(
            f"{name:<46} {run['rate']:>8,.1f}/s {run['ratio']:>7.2f}x "
            f"{run['vs_naive_off']:>12.2f}x {run['worker_cpu_ms']:>8.3f} ms "
            f"{run['redis_cpu_ms']:>7.3f} ms {run['commands']:>9.1f} {run['round_trips']:>12.1f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engines")
    parser.add_argument("--count", type=int, default=3000, help="deliveries each worker drains")
    parser.add_argument("--seconds", type=float, default=4.0, help="each bare loop's length")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--pools", action="store_true", help="also this project with the threads and solo pools"
    )
    parser.add_argument(
        "--idle", type=float, default=2.0, help="seconds of each idle worker measured after it"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="times to measure everything in turn (the machine drifts): medians at the end",
    )
    args = parser.parse_args()
    figures = measure(args.count, args.seconds, args.pools, args.idle, args.rounds)
    if args.json:
        print(json.dumps(figures))
        return 0
    rounds = figures["rounds"]
    for number, turn in enumerate(rounds, start=1):
        if len(rounds) > 1:
            print(f"round {number} of {len(rounds)}")
        _table(turn, args.count)
    if len(rounds) > 1:
        print(f"the {len(rounds)} rounds' medians (each ratio is to its own round's bare loop)")
        _table(figures, args.count)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
