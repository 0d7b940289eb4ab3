"""Endpoints in Redis: where customers want events, which ones, and their signing secrets.

Stored under the keys of :mod:`.keys`; secrets live only in values, never in keys.
Signing secrets and header values are encrypted as :mod:`.cipher` says, with
WEBHOOKS_ENCRYPTION_KEYS; every record read goes through :meth:`EndpointStore.load`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, cast

import redis

from ..clock import isoformat, now
from ..errors import EndpointNotFound, InvalidInput, TenantNotFound
from ..events import EVENT_TYPES, unknown_type
from ..guard import check_url
from ..ids import checked_endpoint_id, checked_tenant_id, new_endpoint_id
from ..models import Endpoint, EndpointSecret, check_tenant_id
from ..settings import Settings
from ..signing import new_secret
from .cipher import Cipher, Resealed
from .connection import transaction, zrange_ids
from .deliveries import DeliveryStore
from .destinations import MAX_RATE
from .keys import Keys
from .scripts import Script, fields

__all__ = [
    "FORBIDDEN_HEADERS",
    "HEADER_NAME",
    "HEADER_VALUE",
    "MAX_RATE_LIMIT",
    "EndpointStore",
    "Reencrypted",
    "check_headers",
    "check_rate_limit",
]


#: Headers an endpoint may not set: framing and identity are ours, and the
#: ``webhook-*`` headers carry the id, the timestamp and the signatures.
FORBIDDEN_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "user-agent",
        # Hop-by-hop headers, which would change how the request travels, not what it says.
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    }
)
MAX_HEADERS = 20
MAX_HEADER_BYTES = 4096
MAX_DESCRIPTION = 1000
#: The highest rate limit an endpoint may have, in attempts a second.
MAX_RATE_LIMIT = MAX_RATE
#: RFC 9110 field names (the OpenAPI document states the same pattern).
HEADER_NAME = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
#: What a header value can hold and still be sent as it was given: visible Latin-1
#: (what http.client encodes) with spaces inside, never at either end (RFC 9110 strips
#: them, and requests refuses them, so every attempt would fail).
HEADER_VALUE = r"[!-~\xa1-\xff](?:[ !-~\xa1-\xff]*[!-~\xa1-\xff])?"
_TOKEN, _VALUE = re.compile(HEADER_NAME), re.compile(HEADER_VALUE)


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Extra request headers for an endpoint, or :class:`InvalidInput` naming the one
    refused: at most 20, each at most 4 KB, none of ours, and only values HTTP can send."""
    if not headers:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidInput("headers", "must be a mapping of names to values")
    if len(headers) > MAX_HEADERS:
        raise InvalidInput("headers", f"{len(headers)} given; at most {MAX_HEADERS}")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise InvalidInput(f"headers.{name}", "is not a valid header name")
        lowered = name.lower()
        if lowered in FORBIDDEN_HEADERS or lowered.startswith("webhook-"):
            raise InvalidInput(f"headers.{name}", "is set by webhooks itself and may not be given")
        if lowered in {other.lower() for other in checked}:
            raise InvalidInput(f"headers.{name}", "is given twice")
        # The value itself is never repeated: it is often a credential.
        if not isinstance(value, str):
            raise InvalidInput(f"headers.{name}", "must be a string")
        if value and not _VALUE.fullmatch(value):
            raise InvalidInput(
                f"headers.{name}",
                "must be visible Latin-1 text on one line, without control characters "
                "or spaces at either end",
            )
        if len(name) + len(value.encode()) > MAX_HEADER_BYTES:
            raise InvalidInput(f"headers.{name}", f"is over {MAX_HEADER_BYTES:,} bytes")
        checked[name] = value
    return checked


def _check_description(description: object) -> str:
    if not isinstance(description, str):
        raise InvalidInput("description", "must be text")
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInput(
            "description", f"is {len(description):,} characters; the limit is {MAX_DESCRIPTION:,}"
        )
    return description


def check_rate_limit(rate_limit: object) -> float | None:
    """An endpoint's rate limit (attempts a second), or None for none; anything but a
    positive number up to MAX_RATE_LIMIT is :class:`InvalidInput`."""
    if rate_limit is None:
        return None
    # bool is an int to Python; True is no rate.
    if isinstance(rate_limit, bool) or not isinstance(rate_limit, int | float):
        raise InvalidInput("rate_limit", "must be a number of deliveries a second, or null")
    if not math.isfinite(rate_limit) or rate_limit <= 0:
        raise InvalidInput("rate_limit", f"must be a positive number, not {rate_limit}")
    if rate_limit > MAX_RATE_LIMIT:
        raise InvalidInput(
            "rate_limit", f"is {rate_limit:g} a second; the most is {MAX_RATE_LIMIT:,}"
        )
    return float(rate_limit)


def _live(record: Any) -> bool:
    """Whether a tenant's (id, deleting) fields say it exists and is not being deleted."""
    tenant_id, deleting = record
    return tenant_id is not None and deleting is None


def _check_event_types(event_types: list[str] | None) -> list[str] | None:
    if not event_types:
        return None
    for name in event_types:
        if name not in EVENT_TYPES:
            # A typo here would receive nothing and nothing would say why.
            raise InvalidInput("event_types", unknown_type(name))
    return sorted(set(event_types))


@dataclass
class Reencrypted:
    """What ``webhooks secrets reencrypt`` did: endpoints seen, the values of the others
    by what they were (:class:`~.cipher.Resealed`), and the endpoints left as they
    were because a value of theirs decrypts under no key."""

    endpoints: int = 0
    values: Counter[Resealed] = field(default_factory=Counter)
    unreadable: list[str] = field(default_factory=list)


class EndpointStore:
    """Owns the endpoint records, their indexes (all, and each tenant's), and each
    endpoint's failure clock. ``cipher``: what encrypts their secrets and header values."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        settings: Settings,
        deliveries: DeliveryStore,
        cipher: Cipher,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._settings = settings
        self._deliveries = deliveries
        self._cipher = cipher
        self._health = Script(client, "record_health")

    def load(self, raw: bytes | str) -> Endpoint:
        """An endpoint record as read from Redis, its values decrypted: the one place that
        decrypts. A value no key decrypts stays encrypted (``Endpoint.unreadable`` tells),
        so listings still work and a write keeps it as it was; workers send nothing."""
        return self._cipher.open_endpoint(Endpoint.model_validate_json(raw))

    def _dump(self, endpoint: Endpoint) -> str:
        """The record as stored: values encrypted under the first key (without keys, in clear)."""
        return self._cipher.seal_endpoint(endpoint).model_dump_json()

    def add(
        self,
        url: str,
        event_types: list[str] | None = None,
        description: str = "",
        *,
        tenant: str,
        headers: Mapping[str, str] | None = None,
        rate_limit: float | None = None,
    ) -> tuple[Endpoint, str]:
        """Register an endpoint of ``tenant``; returns it and its secret, which is shown
        only this once. An unknown tenant raises TenantNotFound and writes nothing.
        ``rate_limit``: attempts a second at most, across all workers (None: no limit)."""
        check_tenant_id(tenant)
        secret = new_secret()
        created = now()
        endpoint = Endpoint(
            id=new_endpoint_id(),
            tenant_id=tenant,
            url=check_url(url, self._settings),
            description=_check_description(description),
            event_types=_check_event_types(event_types),
            created_at=created,
            headers=check_headers(headers),
            secrets=[EndpointSecret(value=secret, created_at=created)],
            rate_limit=check_rate_limit(rate_limit),
        )

        def register(pipe: redis.client.Pipeline) -> None:
            # Watched: a tenant being deleted gets no new endpoint.
            if not _live(pipe.hmget(self._keys.tenant(tenant), "id", "deleting")):
                raise TenantNotFound(tenant)
            pipe.multi()
            pipe.set(self._keys.endpoint(endpoint.id), self._dump(endpoint))
            pipe.zadd(self._keys.endpoints(), {endpoint.id: created.timestamp()})
            pipe.sadd(self._keys.tenant_endpoints(tenant), endpoint.id)

        transaction(self._redis, register, self._keys.tenant(tenant))
        return endpoint, secret

    def get(self, endpoint_id: str, tenant: str | None = None) -> Endpoint:
        """The endpoint; with ``tenant``, another tenant's is not found, exactly as a
        missing one is (as is an id that is not an endpoint id)."""
        raw = self._redis.get(self._keys.endpoint(checked_endpoint_id(endpoint_id)))
        if raw is None:
            raise EndpointNotFound(endpoint_id)
        endpoint = self.load(raw)
        if tenant is not None and endpoint.tenant_id != tenant:
            raise EndpointNotFound(endpoint_id)
        return endpoint

    def all(self, tenant: str | None = None) -> list[Endpoint]:
        """Every endpoint, or one tenant's (unknown tenant: TenantNotFound), oldest first."""
        if tenant is None:
            return self._read(zrange_ids(self._redis, self._keys.endpoints(), 0, -1))
        checked_tenant_id(tenant)
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hmget(self._keys.tenant(tenant), "id", "deleting")
            pipe.smembers(self._keys.tenant_endpoints(tenant))
            record, members = pipe.execute()
        if not _live(record):
            raise TenantNotFound(tenant)
        found = self._read(sorted(member.decode() for member in members))
        return sorted(found, key=lambda endpoint: endpoint.created_at)

    def _read(self, ids: Sequence[str]) -> list[Endpoint]:
        if not ids:
            return []
        raws = self._redis.mget([self._keys.endpoint(endpoint_id) for endpoint_id in ids])
        return [self.load(raw) for raw in raws if raw is not None]

    def _update(
        self,
        endpoint_id: str,
        change: Callable[[Endpoint], Endpoint],
        tenant: str | None = None,
        count: str | None = None,
    ) -> Endpoint:
        """Read, change and write one endpoint (of ``tenant``, when given); retried if
        another writer got there first. ``count``: a counter to bump in the same
        transaction, should the change turn an enabled endpoint into a disabled one."""
        key = self._keys.endpoint(checked_endpoint_id(endpoint_id))

        def body(pipe: redis.client.Pipeline) -> Endpoint:
            raw = pipe.get(key)
            if raw is None:
                raise EndpointNotFound(endpoint_id)
            endpoint = self.load(raw)
            if tenant is not None and endpoint.tenant_id != tenant:
                raise EndpointNotFound(endpoint_id)
            updated = change(endpoint)
            pipe.multi()
            pipe.set(key, self._dump(updated))
            if count and endpoint.enabled and not updated.enabled:
                pipe.hincrby(self._keys.metrics(), count, 1)
            return updated

        return transaction(self._redis, body, key)

    def update(
        self, endpoint_id: str, changes: Mapping[str, Any], tenant: str | None = None
    ) -> Endpoint:
        """Change an endpoint's ``url``, ``event_types``, ``description``, ``headers`` or
        ``rate_limit`` (None: no limit), each checked as ``add`` checks it; nothing
        changes if one is refused."""
        checks: dict[str, Callable[[Any], Any]] = {
            "url": lambda url: check_url(url, self._settings),
            "event_types": _check_event_types,
            "description": _check_description,
            "headers": check_headers,
            "rate_limit": check_rate_limit,
        }
        for name in changes:
            if name not in checks:
                raise InvalidInput(name, "cannot be changed")
        checked = {name: checks[name](value) for name, value in changes.items()}
        return self._update(endpoint_id, lambda e: e.model_copy(update=checked), tenant)

    def disable(
        self,
        endpoint_id: str,
        reason: str,
        *,
        stop: bool = True,
        tenant: str | None = None,
        cause: str | None = None,
    ) -> Endpoint:
        """Stop sending to the endpoint and, unless ``stop`` is False, stop the retries
        of its unfinished deliveries (:meth:`stop_deliveries`). ``cause``: why a worker
        disabled it (gone, failing), counted once in the metrics."""
        counted = f"endpoints_disabled:{cause}" if cause and self._settings.metrics else None
        endpoint = self._update(
            endpoint_id,
            lambda e: e.model_copy(
                update={"enabled": False, "disabled_reason": reason, "disabled_at": now()}
            ),
            tenant,
            counted,
        )
        if stop:
            self.stop_deliveries(endpoint_id, f"endpoint disabled: {reason}")
        return endpoint

    def stop_deliveries(self, endpoint_id: str, reason: str) -> None:
        """Mark the endpoint's unfinished deliveries retries_exhausted, with the reason."""
        index = self._keys.endpoint_deliveries(checked_endpoint_id(endpoint_id))
        ids = zrange_ids(self._redis, index, 0, -1)
        self._deliveries.stop_unfinished(ids, reason)

    def enable(self, endpoint_id: str, tenant: str | None = None) -> Endpoint:
        """Send to the endpoint again, with a fresh start for its failure clock."""
        endpoint = self._update(
            endpoint_id,
            lambda e: e.model_copy(
                update={"enabled": True, "disabled_reason": None, "disabled_at": None}
            ),
            tenant,
        )
        self._redis.delete(self._keys.endpoint_health(endpoint_id))
        return endpoint

    def rotate_secret(
        self, endpoint_id: str, grace: timedelta, tenant: str | None = None
    ) -> tuple[Endpoint, str]:
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

        return self._update(endpoint_id, rotate, tenant), secret

    def reencrypt(self) -> Reencrypted:
        """Move every endpoint's secrets and header values to the first key of
        WEBHOOKS_ENCRYPTION_KEYS, encrypting those stored in clear; safe to repeat, and
        while workers run (each endpoint in a transaction of its own, rerun if it changed
        meanwhile). An endpoint with a value no key decrypts is left as it was, and named."""
        if not self._cipher.enabled:
            raise InvalidInput(
                "WEBHOOKS_ENCRYPTION_KEYS", "is not set: there is no key to encrypt with"
            )
        done = Reencrypted()
        for endpoint_id in zrange_ids(self._redis, self._keys.endpoints(), 0, -1):
            key = self._keys.endpoint(endpoint_id)
            found = transaction(self._redis, partial(self._reseal, key), key)
            done.endpoints += 1
            if found[Resealed.UNREADABLE]:
                done.unreadable.append(endpoint_id)
            else:
                done.values.update(found)
        return done

    def _reseal(self, key: str, pipe: redis.client.Pipeline) -> Counter[Resealed]:
        """One endpoint's part of :meth:`reencrypt`, in its transaction."""
        raw = pipe.get(key)
        if raw is None:
            return Counter()  # deleted meanwhile: nothing left to encrypt
        # Read as stored, not through load(): resealing must know what each value was
        # (in clear, under the first key, under another, under none).
        resealed, found = self._cipher.reseal_endpoint(Endpoint.model_validate_json(raw))
        # All or nothing: an endpoint with a value no key decrypts is left as it was.
        if not found[Resealed.UNREADABLE] and (
            found[Resealed.ENCRYPTED] or found[Resealed.REENCRYPTED]
        ):
            pipe.multi()
            pipe.set(key, resealed.model_dump_json())
        return found

    def record_health(
        self, endpoint_id: str, succeeded: bool, exhausted: bool
    ) -> tuple[datetime | None, int]:
        """Update the failure clock; returns (first failure since the last 2XX, exhausted
        since). An endpoint deleted meanwhile gets no clock back."""
        reply = fields(
            self._health(
                keys={
                    "endpoint_key": self._keys.endpoint(endpoint_id),
                    "health_key": self._keys.endpoint_health(endpoint_id),
                },
                args={
                    "succeeded": int(succeeded),
                    "exhausted": int(exhausted),
                    "now": isoformat(now()),
                },
            )
        )
        if "failing_since" not in reply:
            return None, 0
        return (
            datetime.fromisoformat(reply["failing_since"].decode()),
            int(reply.get("exhausted", b"0")),
        )

    def delete(self, endpoint_id: str, tenant: str | None = None) -> None:
        """Forget the endpoint, its secrets, failure clock and destination state; its
        unfinished deliveries stop now (their records stay until they expire)."""
        endpoint = self.get(endpoint_id, tenant)
        self.stop_deliveries(endpoint_id, f"endpoint {endpoint_id} was deleted")
        self._forget([endpoint])

    def forget_tenant(self, tenant_id: str) -> int:
        """Forget every endpoint of a tenant (their deliveries are the delivery store's
        to forget); returns how many."""
        members = cast(set[bytes], self._redis.smembers(self._keys.tenant_endpoints(tenant_id)))
        ids = [member.decode() for member in members]
        endpoints = self._read(ids)
        self._forget(endpoints)
        self._redis.delete(self._keys.tenant_endpoints(tenant_id))
        return len(endpoints)

    def _forget(self, endpoints: Sequence[Endpoint]) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            for endpoint in endpoints:
                pipe.delete(
                    self._keys.endpoint(endpoint.id),
                    self._keys.endpoint_deliveries(endpoint.id),
                    self._keys.endpoint_health(endpoint.id),
                    self._keys.destination_inflight(endpoint.id),
                    self._keys.destination_breaker(endpoint.id),
                    self._keys.destination_waiting(endpoint.id),
                    self._keys.destination_admitted(endpoint.id),
                    self._keys.destination_admit(endpoint.id),
                    self._keys.destination_paced(endpoint.id),
                    self._keys.destination_throttled(endpoint.id),
                )
                pipe.zrem(self._keys.endpoints(), endpoint.id)
                if endpoint.tenant_id:
                    pipe.srem(self._keys.tenant_endpoints(endpoint.tenant_id), endpoint.id)
            pipe.execute()
