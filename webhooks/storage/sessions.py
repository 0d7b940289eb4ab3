"""Web sessions in Redis: who a browser is, after it traded a token for a cookie.

The cookie holds a random id; Redis holds the session under the id's SHA-256,
with the role (operator, or one tenant), a CSRF token and the expiry, and lets
it lapse on its own. A tenant's sessions end when the tenant is deleted.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

import redis

from . import keys
from .connection import get_redis

__all__ = ["OPERATOR", "Session", "SessionStore", "get_sessions"]

OPERATOR = "operator"


@dataclass(frozen=True)
class Session:
    """A signed-in browser: the operator, or one tenant's customer."""

    role: str  # OPERATOR or "tenant"
    tenant_id: str | None
    csrf: str
    expires_at: float


def _key(session_id: str) -> str:
    return keys.session(hashlib.sha256(session_id.encode()).hexdigest())


class SessionStore:
    """Owns the session records and each tenant's set of them."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def create(self, tenant_id: str | None, expires_at: float) -> tuple[str, Session]:
        """A new session (the operator's when ``tenant_id`` is None); returns its id,
        which only the cookie holds, and the session."""
        session_id = secrets.token_urlsafe(32)
        session = Session(
            OPERATOR if tenant_id is None else "tenant",
            tenant_id,
            secrets.token_urlsafe(24),
            expires_at,
        )
        ttl = max(1, int(expires_at - time.time()))
        key = _key(session_id)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "role": session.role,
                    "tenant_id": tenant_id or "",
                    "csrf": session.csrf,
                    "expires_at": expires_at,
                },
            )
            pipe.expire(key, ttl)
            if tenant_id is not None:
                pipe.sadd(keys.tenant_sessions(tenant_id), key)
                pipe.expire(keys.tenant_sessions(tenant_id), 90 * 86400)
            pipe.execute()
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        """The session, or None if there is none (or it expired)."""
        fields = cast(dict[bytes, bytes], self._redis.hgetall(_key(session_id)))
        if not fields or float(fields[b"expires_at"]) <= time.time():
            return None
        return Session(
            fields[b"role"].decode(),
            fields[b"tenant_id"].decode() or None,
            fields[b"csrf"].decode(),
            float(fields[b"expires_at"]),
        )

    def delete(self, session_id: str) -> None:
        self._redis.delete(_key(session_id))

    def forget_tenant(self, tenant_id: str) -> None:
        """End every session of a tenant."""
        members = cast(set[bytes], self._redis.smembers(keys.tenant_sessions(tenant_id)))
        self._redis.delete(*members, keys.tenant_sessions(tenant_id))


@lru_cache(maxsize=1)
def get_sessions() -> SessionStore:
    """The process's session store, on the shared client."""
    return SessionStore(get_redis())
