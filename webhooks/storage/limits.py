"""Rate limits kept in Redis, so that they hold across every ``serve`` process: what a
tenant (or the operator, on a tenant's behalf) may make our workers send on demand."""

from __future__ import annotations

import secrets
import time

import redis

from .keys import Keys
from .scripts import Script

__all__ = ["RateLimits"]


class RateLimits:
    """Sliding windows in Redis: at most ``limit`` uses in any ``window`` seconds."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._keys = keys
        self._take = Script(client, "take_rate")

    def take(self, name: str, scope: str, limit: int, window: float = 60.0) -> float | None:
        """Take one use of the limit ``name`` for ``scope`` (a tenant, say): None if it
        was free, else the seconds until one is."""
        wait = self._take(
            keys={"uses_key": self._keys.rate_limit(name, scope)},
            args={
                "now": time.time(),
                "window": window,
                "limit": limit,
                "use_id": secrets.token_hex(8),
            },
        )
        return None if wait == 0 else max(0.0, float(wait))
