"""Web sessions in Redis: who a browser is, after it traded a token for a cookie.

The cookie holds a random id; Redis holds the session under the id's SHA-256, with
the role (operator, or one tenant), a CSRF token, the expiry, and what granted it:

- for a tenant's session, the tenant's creation time as the token's check read it.
  A session is created only if the tenant is still that one (one Lua step, so that
  deleting the tenant cannot slip in between), and is ended when read if the tenant
  is gone or was registered again under the same id;
- the fingerprint of the credential that made it (the operator's token, or the
  portal secret that signed the link), which the web layer checks on every request,
  so that rotating a credential ends the sessions it made.

Sessions lapse on their own; a tenant's end when the tenant is deleted, and
``revoke`` ends one tenant's, or every session, on demand.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import redis

from .keys import Keys
from .scripts import Script, fields

__all__ = ["OPERATOR", "Session", "SessionStore"]

OPERATOR = "operator"
_REVOKE_SLICE = 1000  # sessions ended per call when ending them all: Redis stays responsive


@dataclass(frozen=True)
class Session:
    """A signed-in browser: the operator, or one tenant's customer."""

    role: str  # OPERATOR or "tenant"
    tenant_id: str | None
    csrf: str
    expires_at: float
    grant: str  # the fingerprint of the credential that made it


class SessionStore:
    """Owns the session records, each tenant's set of them, and the set of all."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._create = Script(client, "create_session")
        self._read = Script(client, "read_session")
        self._revoke = Script(client, "revoke_sessions")

    def _key(self, session_id: str) -> str:
        return self._keys.session(hashlib.sha256(session_id.encode()).hexdigest())

    def create(
        self,
        tenant_id: str | None,
        expires_at: float,
        *,
        grant: str,
        tenant_created_at: str = "",
    ) -> tuple[str, Session] | None:
        """A new session (the operator's when ``tenant_id`` is None); returns its id,
        which only the cookie holds, and the session. None if the tenant's record no
        longer holds ``tenant_created_at`` (it was deleted, or registered again)."""
        session_id = secrets.token_urlsafe(32)
        session = Session(
            OPERATOR if tenant_id is None else "tenant",
            tenant_id,
            secrets.token_urlsafe(24),
            expires_at,
            grant,
        )
        created = self._create(
            keys={
                "session_key": self._key(session_id),
                "tenant_key": self._keys.tenant(tenant_id or ""),
                "tenant_sessions_key": self._keys.tenant_sessions(tenant_id or ""),
                "all_sessions_key": self._keys.sessions(),
            },
            args={
                "role": session.role,
                "tenant_id": tenant_id or "",
                "csrf": session.csrf,
                "expires_at": expires_at,
                "tenant_created_at": tenant_created_at if tenant_id is not None else "",
                "grant": grant,
                "ttl": max(1, int(expires_at - time.time())),
                "now": time.time(),
            },
        )
        return (session_id, session) if created == 1 else None

    def get(self, session_id: str) -> Session | None:
        """The session, or None if there is none, it expired, or its tenant is gone."""
        reply = self._read(
            keys={"session_key": self._key(session_id)},
            args={"tenant_template": self._keys.tenant("%s")},
        )
        if not reply:
            return None
        record = fields(reply)
        if float(record["expires_at"]) <= time.time():
            return None
        return Session(
            record["role"].decode(),
            record["tenant_id"].decode() or None,
            record["csrf"].decode(),
            float(record["expires_at"]),
            record.get("grant", b"").decode(),
        )

    def delete(self, session_id: str) -> None:
        self._redis.delete(self._key(session_id))

    def forget_tenant(self, tenant_id: str) -> int:
        """End every session of a tenant; returns how many ended."""
        _, ended = self._revoke(
            keys={
                "tenant_sessions_key": self._keys.tenant_sessions(tenant_id),
                "all_sessions_key": self._keys.sessions(),
            },
            args={"limit": _REVOKE_SLICE},
        )
        return int(ended)

    def revoke_all(self) -> int:
        """End every session, the operator's included; returns how many ended."""
        total = 0
        while True:
            looked_at, ended = self._revoke(
                keys={"tenant_sessions_key": "", "all_sessions_key": self._keys.sessions()},
                args={"limit": _REVOKE_SLICE},
            )
            total += int(ended)
            if not looked_at:
                return total
