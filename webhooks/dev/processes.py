"""Stopping the processes the dev tools start, as a process manager does it."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterable

__all__ = ["terminate", "terminate_all"]


def terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM (a warm shutdown: work in flight finishes), then SIGKILL after ``grace``."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def terminate_all(processes: Iterable[subprocess.Popen[bytes]], grace: float) -> None:
    """:func:`terminate` for several processes at once: all get SIGTERM first, so that
    their warm shutdowns overlap; any still running ``grace`` seconds later, SIGKILL."""
    processes = list(processes)
    for process in processes:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
