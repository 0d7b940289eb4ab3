"""Tenants in Redis: the producer's customers, each owning its endpoints and deliveries.

A tenant is named by the producer's own id, so no mapping table is needed. Its
keys (:mod:`.keys`) hold its record, its endpoint ids (what publishing reads) and
its deliveries by status (what listing and stats read): nothing about one tenant
is found by looking through the others'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import redis

from ..clock import isoformat, now
from ..errors import InvalidInput, TenantExists, TenantNotFound
from ..ids import checked_tenant_id
from ..models import Tenant, check_tenant_id
from .connection import zrange_ids
from .deliveries import DeliveryStore
from .endpoints import EndpointStore
from .keys import Keys
from .sessions import SessionStore

__all__ = ["Forgotten", "TenantStore"]


@dataclass(frozen=True)
class Forgotten:
    """What deleting a tenant removed."""

    tenant_id: str
    endpoints: int
    deliveries: int


class TenantStore:
    """Owns the tenant records and their index; deleting a tenant forgets all it owns."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        deliveries: DeliveryStore,
        endpoints: EndpointStore,
        sessions: SessionStore,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._deliveries = deliveries
        self._endpoints = endpoints
        self._sessions = sessions

    def add(self, tenant_id: str, name: str = "") -> Tenant:
        """Register a tenant; a taken id raises TenantExists."""
        check_tenant_id(tenant_id, "id")
        if not isinstance(name, str) or len(name) > 200 or not name.isprintable():
            raise InvalidInput("name", "must be at most 200 printable characters")
        tenant = Tenant(id=tenant_id, name=name, created_at=now())
        created = self._redis.hsetnx(self._keys.tenant(tenant_id), "id", tenant_id)
        if not created:
            raise TenantExists(tenant_id)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._keys.tenant(tenant_id),
                mapping={"name": name, "created_at": isoformat(tenant.created_at)},
            )
            pipe.zadd(self._keys.tenants(), {tenant_id: 0})
            pipe.execute()
        return tenant

    def get(self, tenant_id: str) -> Tenant:
        """The tenant, or TenantNotFound (also while it is being deleted, or for an id
        that is not a tenant id)."""
        key = self._keys.tenant(checked_tenant_id(tenant_id))
        tenant = _tenant(cast(dict[bytes, bytes], self._redis.hgetall(key)))
        if tenant is None:
            raise TenantNotFound(tenant_id)
        return tenant

    def list(self, limit: int = 100, after: str | None = None) -> list[Tenant]:
        """Tenants ordered by id; ``after`` is the previous page's last id."""
        ids = zrange_ids(
            self._redis,
            self._keys.tenants(),
            f"({after}" if after else "-",
            "+",
            bylex=True,
            limit=limit,
        )
        with self._redis.pipeline(transaction=False) as pipe:
            for tenant_id in ids:
                pipe.hgetall(self._keys.tenant(tenant_id))
            records = pipe.execute()
        return [tenant for fields in records if (tenant := _tenant(fields)) is not None]

    def delete(self, tenant_id: str) -> Forgotten:
        """Forget the tenant and everything it owns: its endpoints and secrets, and its
        deliveries (records, attempts, index entries, scheduled runs), which therefore
        stop at once. An attempt in flight finishes or is dropped at its claim; what it
        would record finds nothing to write to.

        The tenant is marked first, so that nothing new is created for it (nor a new
        tenant under its id) while the rest goes; a deletion cut short is finished by
        deleting again.
        """
        key = self._keys.tenant(checked_tenant_id(tenant_id))
        if not self._redis.hexists(key, "id"):
            raise TenantNotFound(tenant_id)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, "deleting", isoformat(now()))
            pipe.zrem(self._keys.tenants(), tenant_id)
            pipe.execute()
        self._sessions.forget_tenant(tenant_id)
        deliveries = self._deliveries.forget_tenant(tenant_id)
        endpoints = self._endpoints.forget_tenant(tenant_id)
        self._redis.delete(key)
        return Forgotten(tenant_id, endpoints, deliveries)


def _tenant(fields: dict[bytes, bytes]) -> Tenant | None:
    """The tenant a record holds; None for none, or one being deleted."""
    if not fields or b"created_at" not in fields or b"deleting" in fields:
        return None
    return Tenant.model_validate({name.decode(): value.decode() for name, value in fields.items()})
