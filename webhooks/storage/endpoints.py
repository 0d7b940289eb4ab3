"""Endpoints in Redis: where customers want events, which ones, and their signing secrets.

Stored under the keys of :mod:`.keys`; secrets live only in values, never in keys.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import lru_cache

import redis

from ..clock import isoformat, now
from ..errors import EndpointNotFound, InvalidInput
from ..events import EVENT_TYPES
from ..guard import check_url
from ..models import Endpoint, EndpointSecret
from ..signing import new_secret
from . import keys
from .connection import get_redis, transaction, zrange_ids
from .deliveries import get_store

__all__ = ["EndpointStore", "get_endpoints"]


def _check_event_types(event_types: list[str] | None) -> list[str] | None:
    if not event_types:
        return None
    for name in event_types:
        if name not in EVENT_TYPES:
            known = ", ".join(sorted(EVENT_TYPES))
            raise InvalidInput("event", f"unknown event type {name!r}; known types: {known}")
    return sorted(set(event_types))


class EndpointStore:
    """Owns the endpoint records, their index, and each endpoint's failure clock."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def add(self, url: str, event_types: list[str] | None = None,
            description: str = "") -> tuple[Endpoint, str]:
        """Register an endpoint; returns it and its secret, which is shown only this once."""
        secret = new_secret()
        created = now()
        endpoint = Endpoint(
            id="ep_" + secrets.token_hex(12),
            url=check_url(url),
            description=description,
            event_types=_check_event_types(event_types),
            created_at=created,
            secrets=[EndpointSecret(value=secret, created_at=created)],
        )
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.endpoint(endpoint.id), endpoint.model_dump_json())
            pipe.zadd(keys.endpoints(), {endpoint.id: created.timestamp()})
            pipe.execute()
        return endpoint, secret

    def get(self, endpoint_id: str) -> Endpoint:
        raw = self._redis.get(keys.endpoint(endpoint_id))
        if raw is None:
            raise EndpointNotFound(endpoint_id)
        return Endpoint.model_validate_json(raw)

    def all(self) -> list[Endpoint]:
        ids = zrange_ids(self._redis, keys.endpoints(), 0, -1)
        if not ids:
            return []
        raws = self._redis.mget([keys.endpoint(endpoint_id) for endpoint_id in ids])
        return [Endpoint.model_validate_json(raw) for raw in raws if raw is not None]

    def _update(self, endpoint_id: str, change: Callable[[Endpoint], Endpoint]) -> Endpoint:
        """Read, change and write one endpoint; retried if another writer got there first."""
        key = keys.endpoint(endpoint_id)

        def body(pipe: redis.client.Pipeline) -> Endpoint:
            raw = pipe.get(key)
            if raw is None:
                raise EndpointNotFound(endpoint_id)
            updated = change(Endpoint.model_validate_json(raw))
            pipe.multi()
            pipe.set(key, updated.model_dump_json())
            return updated

        return transaction(self._redis, body, key)

    def disable(self, endpoint_id: str, reason: str, *, stop: bool = True) -> Endpoint:
        """Stop sending to the endpoint and, unless ``stop`` is False, stop the retries
        of its unfinished deliveries (:meth:`stop_deliveries`)."""
        endpoint = self._update(endpoint_id, lambda e: e.model_copy(update={
            "enabled": False, "disabled_reason": reason, "disabled_at": now()}))
        if stop:
            self.stop_deliveries(endpoint_id, reason)
        return endpoint

    def stop_deliveries(self, endpoint_id: str, reason: str) -> None:
        """Mark the endpoint's unfinished deliveries retries_exhausted, with the reason."""
        ids = zrange_ids(self._redis, keys.endpoint_deliveries(endpoint_id), 0, -1)
        get_store().stop_unfinished(ids, f"endpoint disabled: {reason}")

    def enable(self, endpoint_id: str) -> Endpoint:
        endpoint = self._update(endpoint_id, lambda e: e.model_copy(update={
            "enabled": True, "disabled_reason": None, "disabled_at": None}))
        self._redis.delete(keys.endpoint_health(endpoint_id))  # a fresh start for the failure clock
        return endpoint

    def rotate_secret(self, endpoint_id: str, grace: timedelta) -> tuple[Endpoint, str]:
        """Add a new secret; older ones keep signing for ``grace``, then are dropped."""
        secret = new_secret()
        moment = now()

        def rotate(endpoint: Endpoint) -> Endpoint:
            kept = [
                old if old.expires_at else old.model_copy(update={"expires_at": moment + grace})
                for old in endpoint.secrets
                if old.active(moment) and grace > timedelta(0)
            ]
            fresh = EndpointSecret(value=secret, created_at=moment)
            return endpoint.model_copy(update={"secrets": [*kept, fresh]})

        return self._update(endpoint_id, rotate), secret

    def record_health(self, endpoint_id: str, succeeded: bool, exhausted: bool
                      ) -> tuple[datetime | None, int]:
        """Update the failure clock; returns (first failure since the last 2XX, exhausted since)."""
        key = keys.endpoint_health(endpoint_id)
        if succeeded:
            self._redis.delete(key)
            return None, 0
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "failing_since", isoformat(now()))
            if exhausted:
                pipe.hincrby(key, "exhausted", 1)
            pipe.hgetall(key)
            health = pipe.execute()[-1]
        since = datetime.fromisoformat(health[b"failing_since"].decode())
        return since, int(health.get(b"exhausted", 0))

    def delete(self, endpoint_id: str) -> None:
        self.get(endpoint_id)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.endpoint(endpoint_id), keys.endpoint_deliveries(endpoint_id),
                        keys.endpoint_health(endpoint_id))
            pipe.zrem(keys.endpoints(), endpoint_id)
            pipe.execute()

    def delivery_ids(self, endpoint_id: str, since: datetime, until: datetime) -> list[str]:
        return zrange_ids(self._redis, keys.endpoint_deliveries(endpoint_id), since.timestamp(),
                          until.timestamp(), byscore=True)


@lru_cache(maxsize=1)
def get_endpoints() -> EndpointStore:
    """The process's endpoint store, on the shared client."""
    return EndpointStore(get_redis())
