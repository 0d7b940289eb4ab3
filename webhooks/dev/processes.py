"""Stopping the processes the dev tools start, as a process manager does it."""

from __future__ import annotations

import signal
import subprocess

__all__ = ["terminate"]


def terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM (a warm shutdown: work in flight finishes), then SIGKILL after ``grace``."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
