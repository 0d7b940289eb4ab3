"""The formats of the ids that name what is stored: tenants, endpoints and deliveries.

An id from outside (a URL, a query, a body, the command line, a caller of the
Python API) is matched against its kind's format before it becomes part of a Redis
key. Unchecked, ``ep_x:deliveries`` named another key of another type (a 500 that
told an attacker the endpoint exists), and ``*`` or ``{`` could have named keys
that no id owns. An id that cannot be of its kind is not found, exactly as an id
that is well-formed but missing: the answer must not tell the two apart.

The patterns are also what the OpenAPI document states for each id
(:mod:`webhooks.web.app`), so the document and the check cannot disagree.
"""

from __future__ import annotations

import re
import secrets

from .errors import DeliveryNotFound, EndpointNotFound, TenantNotFound

__all__ = [
    "DELIVERY_ID",
    "ENDPOINT_ID",
    "TENANT_ID",
    "checked_delivery_id",
    "checked_endpoint_id",
    "checked_tenant_id",
    "is_tenant_id",
    "new_endpoint_id",
]

#: A tenant id is the producer's own for a customer, such as ``acct_42``. It may hold
#: ``:``, so its keys put it between braces, which it may not hold (:mod:`.storage.keys`).
TENANT_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
#: An endpoint id is made here: ``ep_`` and 12 random bytes in hex.
ENDPOINT_ID = r"^ep_[0-9a-f]{24}$"
#: A delivery id is a UUID (version 5 from the event and its destination), as
#: ``str(uuid)`` writes it: lower-case hex in 8-4-4-4-12.
DELIVERY_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

# fullmatch, and ``$`` replaced: in Python ``$`` also matches before a final newline.
_TENANT, _ENDPOINT, _DELIVERY = (
    re.compile(pattern.removesuffix("$") + r"\Z")
    for pattern in (TENANT_ID, ENDPOINT_ID, DELIVERY_ID)
)


def is_tenant_id(value: object) -> bool:
    """Whether ``value`` has a tenant id's format."""
    return isinstance(value, str) and _TENANT.match(value) is not None


def new_endpoint_id() -> str:
    """A new endpoint's id, in :data:`ENDPOINT_ID`'s format."""
    return "ep_" + secrets.token_hex(12)


def checked_tenant_id(value: str) -> str:
    """``value`` if it can name a tenant; else :class:`TenantNotFound`, as for a missing one."""
    if not is_tenant_id(value):
        raise TenantNotFound(str(value))
    return value


def checked_endpoint_id(value: str) -> str:
    """``value`` if it can name an endpoint; else :class:`EndpointNotFound`, as for a
    missing one."""
    if not isinstance(value, str) or _ENDPOINT.match(value) is None:
        raise EndpointNotFound(str(value))
    return value


def checked_delivery_id(value: str) -> str:
    """``value`` if it can name a delivery; else :class:`DeliveryNotFound`, as for a
    missing one."""
    if not isinstance(value, str) or _DELIVERY.match(value) is None:
        raise DeliveryNotFound(str(value))
    return value
