"""Portal tokens: what a customer's link carries, granting one tenant for a while.

A token holds the tenant's id, its creation time and an expiry time, signed with
``WEBHOOKS_PORTAL_SECRET`` (HMAC-SHA256 through itsdangerous, which compares
signatures in constant time). It is good on the API as a bearer token and, once
exchanged, as a session in the portal page. A tenant deleted and registered again
under the same id does not inherit the old one's links. Tokens are never logged.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import itsdangerous

from ..clock import isoformat
from ..errors import InvalidInput, NotFound, TokenInvalid
from ..models import Tenant
from ..system import System, get_default

__all__ = ["MAX_TTL_SECONDS", "PortalGrant", "portal_token", "read_portal_token"]

_SALT = "webhooks.portal"

#: The longest a portal link may be good for.
MAX_TTL_SECONDS = 90 * 86400


@dataclass(frozen=True)
class PortalGrant:
    """What a valid portal token grants: one tenant, until ``expires_at`` (Unix time)."""

    tenant_id: str
    expires_at: float
    tenant_created_at: str  # the tenant's record as checked: a session made from it keeps it


def _serializer(system: System) -> itsdangerous.URLSafeSerializer:
    secret = system.settings.portal_secret
    if secret is None:
        raise InvalidInput("WEBHOOKS_PORTAL_SECRET", "is not set, so there are no portal tokens")
    # itsdangerous signs with HMAC-SHA1 unless told otherwise (a 20-byte tag).
    return itsdangerous.URLSafeSerializer(
        secret.get_secret_value(), salt=_SALT, signer_kwargs={"digest_method": hashlib.sha256}
    )


def _born(tenant: Tenant) -> int:
    return round(tenant.created_at.timestamp() * 1_000_000)


def portal_token(tenant_id: str, ttl_seconds: float = 3600, *, system: System | None = None) -> str:
    """A token granting ``tenant_id``'s resources for ``ttl_seconds``; an unknown
    tenant raises :class:`~webhooks.TenantNotFound`. ``system``: the deployment whose
    portal it opens (the default System's unless given)."""
    system = system or get_default()
    if (
        isinstance(ttl_seconds, bool)
        or not isinstance(ttl_seconds, int | float)
        or not 0 < ttl_seconds <= MAX_TTL_SECONDS
    ):
        raise InvalidInput(
            "ttl_seconds", f"must be more than 0 and at most {MAX_TTL_SECONDS} (90 days)"
        )
    serializer = _serializer(system)
    tenant = system.tenants.get(tenant_id)
    return str(
        serializer.dumps({"t": tenant.id, "c": _born(tenant), "e": int(time.time() + ttl_seconds)})
    )


def read_portal_token(system: System, token: str) -> PortalGrant:
    """The grant a token carries, or :class:`~webhooks.errors.TokenInvalid` (also when
    its tenant is gone, or is another tenant registered under the same id)."""
    try:
        payload: Any = _serializer(system).loads(token)
    except itsdangerous.BadData:
        raise TokenInvalid("the token is not valid") from None
    if (
        not isinstance(payload, dict)
        or not isinstance(payload.get("t"), str)
        or not isinstance(payload.get("e"), int)
        or not isinstance(payload.get("c"), int)
    ):
        raise TokenInvalid("the token is not valid")
    if payload["e"] <= time.time():
        raise TokenInvalid("the token has expired")
    try:
        tenant = system.tenants.get(payload["t"])
    except NotFound:
        raise TokenInvalid("the token's tenant no longer exists") from None
    if _born(tenant) != payload["c"]:
        raise TokenInvalid("the token's tenant no longer exists")
    return PortalGrant(tenant.id, float(payload["e"]), isoformat(tenant.created_at))
