"""Who is asking: the operator, or one tenant's customer; and the CSRF check of pages.

- **Bearer tokens** (``Authorization: Bearer ...``): ``WEBHOOKS_API_TOKEN`` is the
  operator, who reaches everything; a portal token (:mod:`webhooks.tokens`) is one
  tenant. Both are compared in constant time and never logged.
- **Sessions**: a page trades a token for a session (``POST /api/v1/session``),
  held in an HttpOnly, SameSite=Strict cookie, named ``__Host-webhooks_session`` (and
  Secure) under HTTPS. A request that changes anything
  with a session must also carry the session's CSRF token in ``X-CSRF-Token``, and
  an ``Origin``, when sent, must be this server's own. A session is bound to what
  granted it: its tenant as it was (:mod:`webhooks.storage.sessions` checks it), and
  the credential, whose fingerprint is checked here on every request, so that a
  restart with a new ``WEBHOOKS_API_TOKEN`` or ``WEBHOOKS_PORTAL_SECRET`` ends the
  sessions the old one made.
- **Embedded portal sessions**: a portal framed in another site's page gets no cookie
  (browsers withhold a SameSite=Strict cookie from a cross-site frame, and many block
  third-party cookies outright), so its page trades the link for a session whose
  credential it keeps in memory and sends as ``Authorization: Bearer session_...``.
  A browser never attaches that header by itself, so another site cannot make a
  request carry it: no CSRF token is needed, and a state-changing request must
  still come from this server's own origin when it names one.
- **Tenant scope**: a customer asking for another tenant's anything gets exactly
  the 404 that an id that does not exist gets, never a 403.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from ..errors import TenantNotFound, TokenInvalid
from ..storage.sessions import Session
from ..system import System
from .deps import SystemDep, Tenants
from .errors import ApiError
from .tokens import read_portal_token

__all__ = [
    "COOKIE",
    "SECURE_COOKIE",
    "SESSION_BEARER",
    "Principal",
    "Who",
    "bearer_session_id",
    "check_origin",
    "grant_of",
    "operator",
    "principal",
    "session_cookie",
    "tenant_scope",
    "token_is_operator",
    "token_principal",
]

COOKIE = "webhooks_session"
#: The session cookie under HTTPS. Browsers keep a ``__Host-`` cookie only if it is
#: Secure, for Path=/ and without a Domain, so neither a sibling subdomain nor a
#: plain-HTTP answer can set one to plant a session of its choosing.
SECURE_COOKIE = "__Host-" + COOKIE
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
#: What starts a session's credential sent as a bearer token (an embedded portal's);
#: a portal token never starts so (it is base64 of JSON: ``eyJ``).
SESSION_BEARER = "session_"


@dataclass(frozen=True)
class Principal:
    """Who a request is from: the operator (``tenant_id`` None) or one tenant."""

    tenant_id: str | None
    session: Session | None = None  # when it came with a session cookie
    expires_at: float | None = None  # when its portal token expires
    tenant_created_at: str = ""  # the tenant's creation time its portal token was checked against

    @property
    def is_operator(self) -> bool:
        return self.tenant_id is None


def token_is_operator(system: System, token: str) -> bool:
    """Whether ``token`` is the operator's (compared in constant time)."""
    operator_token = system.settings.api_token
    return operator_token is not None and hmac.compare_digest(
        token.encode(), operator_token.get_secret_value().encode()
    )


def token_principal(system: System, token: str) -> Principal:
    """The principal a bearer token stands for, or a 401."""
    if token_is_operator(system, token):
        return Principal(None)
    try:
        grant = read_portal_token(system, token)
    except TokenInvalid as exc:
        raise ApiError(401, "unauthorized", str(exc)) from None
    return Principal(
        grant.tenant_id, expires_at=grant.expires_at, tenant_created_at=grant.tenant_created_at
    )


@lru_cache(maxsize=4)
def _fingerprint(credential: str) -> str:
    # Slow on purpose, once per credential and process: Redis keeps the result, and a
    # weak operator token must not be recoverable from a copy of it.
    digest = hashlib.pbkdf2_hmac(
        "sha256", credential.encode(), b"webhooks.session.grant", 200_000, dklen=16
    )
    return digest.hex()


def grant_of(system: System, tenant_id: str | None) -> str | None:
    """The fingerprint of the credential that makes sessions of this kind today: the
    operator's token for the operator's, the portal secret for a tenant's. None when
    that credential is not set (then no such session is good)."""
    settings = system.settings
    credential = settings.api_token if tenant_id is None else settings.portal_secret
    return None if credential is None else _fingerprint(credential.get_secret_value())


def check_origin(request: Request) -> None:
    """Refuse a request whose ``Origin`` names another site than this server's host and
    port (the scheme is left out: a proxy in front may end TLS, and no other site can
    have our host). Browsers send it with every state-changing request."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get(
        "host", request.url.netloc
    ):
        raise ApiError(403, "cross_site", "a request from another site is refused")


def session_cookie(request: Request) -> str:
    """The session cookie's name for this request: :data:`SECURE_COOKIE` when its scheme
    is https (the connection's, or the ``X-Forwarded-Proto`` of a proxy uvicorn trusts:
    ``FORWARDED_ALLOW_IPS``), else :data:`COOKIE`. Only that name is read: under HTTPS
    the plain one could have been planted by a sibling subdomain or over HTTP."""
    return SECURE_COOKIE if request.url.scheme == "https" else COOKIE


def _live_session(system: System, session_id: str) -> Session:
    """The session, if it is still good: not expired, and made by today's credential."""
    session = system.sessions.get(session_id) if session_id else None
    if session is None:
        raise ApiError(401, "unauthorized", "a bearer token or a session is required")
    grant = grant_of(system, session.tenant_id)
    if grant is None or not hmac.compare_digest(session.grant.encode(), grant.encode()):
        system.sessions.delete(session_id)
        raise ApiError(401, "unauthorized", "the session has ended; sign in again")
    return session


def bearer_session_id(request: Request) -> str | None:
    """The id of the session a request's bearer credential names (an embedded
    portal's), or None when it sends none."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(SESSION_BEARER):
        return None
    return token.removeprefix(SESSION_BEARER)


def principal(request: Request, system: SystemDep) -> Principal:
    """The request's principal, from its bearer token or its session; else a 401."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "the Authorization header must be 'Bearer <token>'")
        session_id = bearer_session_id(request)
        if session_id is None or token_is_operator(system, token.strip()):
            return token_principal(system, token.strip())
        session = _live_session(system, session_id)
        if request.method not in _SAFE:
            check_origin(request)
        return Principal(session.tenant_id, session)
    session = _live_session(system, request.cookies.get(session_cookie(request), ""))
    if request.method not in _SAFE:
        check_origin(request)
        if not hmac.compare_digest(
            request.headers.get("x-csrf-token", "").encode(), session.csrf.encode()
        ):
            raise ApiError(403, "csrf", "the X-CSRF-Token header is missing or wrong")
    return Principal(session.tenant_id, session)


Who = Annotated[Principal, Depends(principal)]


def tenant_scope(tenant_id: str, who: Who, tenants: Tenants) -> str:
    """The tenant a route names, if the principal may see it; another tenant's, or one
    that does not exist, is the same 404."""
    if not who.is_operator and who.tenant_id != tenant_id:
        raise TenantNotFound(tenant_id)
    tenants.get(tenant_id)
    return tenant_id


def operator(who: Who) -> Principal:
    """Only the operator passes."""
    if not who.is_operator:
        raise ApiError(403, "operator_only", "this needs the operator's token")
    return who
