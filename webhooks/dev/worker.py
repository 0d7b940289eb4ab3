"""Start and stop a real ``celery -A webhooks worker`` process, for the demo and the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from .processes import terminate, terminate_all

__all__ = ["kill_pool", "kill_worker", "start_worker", "stop_worker", "stop_workers", "tree_rss_kb"]


def start_worker(
    log_path: Path, env: dict[str, str], *extra_args: str, ready_within: float = 30.0
) -> subprocess.Popen[bytes]:
    """The production worker command with ``env`` added, returned once it reports ready.

    Without mingle: at start it asks the other workers for the tasks they revoked,
    which costs a second of waiting per start and matters to nothing here.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "webhooks",
                "worker",
                "--loglevel=INFO",
                "--without-mingle",
                *extra_args,
            ],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so kill_worker gets the pool too
        )
    deadline = time.monotonic() + ready_within
    while b" ready." not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"the worker did not start; its log:\n{log_path.read_text()}")
        time.sleep(0.1)
    return process


def stop_worker(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """Warm shutdown (SIGTERM), as a process manager does it; SIGKILL after ``grace``."""
    terminate(process, grace)


def stop_workers(processes: Iterable[subprocess.Popen[bytes]], grace: float = 20.0) -> None:
    """:func:`stop_worker` for several workers, their warm shutdowns at the same time:
    one takes 2-3 s, most of it waiting for its pool, not working."""
    terminate_all(processes, grace)


def kill_worker(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and its pool processes at once, as a lost machine would."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def kill_pool(process: subprocess.Popen[bytes]) -> list[int]:
    """SIGKILL the worker's pool processes (its children), as an OOM kill would, and
    return their ids; the worker's main process goes on."""
    pids = [
        int(child)
        for task in Path(f"/proc/{process.pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and its children (the prefork pool), in KB."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1])
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += tree_rss_kb(int(child))
    return total
