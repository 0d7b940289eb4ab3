"""Start and stop ``webhooks serve`` as production runs it: for the tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from .processes import terminate

__all__ = ["free_port", "start_server", "stop_server"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server(
    log_path: Path, env: dict[str, str], port: int | None = None, ready_within: float = 30.0
) -> tuple[subprocess.Popen[bytes], str]:
    """``webhooks serve`` on 127.0.0.1 with ``env`` added; returns the process and its base
    URL once it answers (any status: /healthz may say Redis is down, on purpose)."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "webhooks", "serve", "--port", str(port)],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + ready_within
    while True:
        try:
            requests.get(base + "/healthz", timeout=5)
            return process, base
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(
                    f"webhooks serve did not start; its log:\n{log_path.read_text()}"
                ) from None
            time.sleep(0.1)


def stop_server(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM (uvicorn finishes the requests in flight), SIGKILL after ``grace``."""
    terminate(process, grace)
