"""Deliveries and their attempts, kept in Redis.

Layout (``{id}`` is the delivery id, which is also the Celery task id):

- ``webhooks:delivery:{id}``           hash: the delivery's fields and ``body``,
                                       the exact bytes POSTed on every attempt
- ``webhooks:delivery:{id}:attempts``  list: one JSON :class:`Attempt` per attempt
- ``webhooks:deliveries``              sorted set of every id, scored by ``updated_at``
- ``webhooks:deliveries:{status}``     the same, one per status, so listing by
                                       status is one ZRANGE

Every write is one MULTI/EXEC transaction, so a reader never sees an attempt
without the status it led to. Keys expire ``retention`` after their last change;
the indexes are trimmed by score at the same moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from functools import lru_cache
from typing import cast

import redis

from .clock import isoformat, now
from .errors import DeliveryNotFound
from .models import Attempt, Delivery, DeliveryStatus
from .settings import get_settings

__all__ = ["DeliveryStore", "get_store"]

_PREFIX = "webhooks:"
_FIELDS = ("id", "url", "event_id", "event_type", "status", "created_at", "updated_at",
           "next_attempt_at")


def _delivery_key(delivery_id: str) -> str:
    return f"{_PREFIX}delivery:{delivery_id}"


def _attempts_key(delivery_id: str) -> str:
    return f"{_PREFIX}delivery:{delivery_id}:attempts"


def _index_key(status: DeliveryStatus | None = None) -> str:
    return f"{_PREFIX}deliveries" + (f":{status.value}" if status else "")


def _delivery(fields: Mapping[bytes, bytes], attempts: list[bytes]) -> Delivery:
    values = {key.decode(): value.decode() for key, value in fields.items() if key != b"body"}
    return Delivery.model_validate(
        {
            **values,
            "next_attempt_at": values.get("next_attempt_at") or None,
            "attempts": [Attempt.model_validate_json(raw) for raw in attempts],
        }
    )


class DeliveryStore:
    def __init__(self, client: redis.Redis, retention: timedelta) -> None:
        self.redis = client
        self.retention = retention

    def _index(self, pipe: redis.client.Pipeline, delivery_id: str, status: DeliveryStatus,
               moment: datetime) -> None:
        score = moment.timestamp()
        pipe.zadd(_index_key(), {delivery_id: score})
        for other in DeliveryStatus:
            if other is not status:
                pipe.zrem(_index_key(other), delivery_id)
        pipe.zadd(_index_key(status), {delivery_id: score})
        ttl = int(self.retention.total_seconds())
        pipe.expire(_delivery_key(delivery_id), ttl)
        pipe.expire(_attempts_key(delivery_id), ttl)

    def create(self, delivery: Delivery, body: bytes) -> None:
        fields = {name: getattr(delivery, name) for name in _FIELDS}
        mapping = {
            name: isoformat(value) if isinstance(value, datetime) else str(value or "")
            for name, value in fields.items()
        }
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(_delivery_key(delivery.id), mapping={**mapping, "body": body})  # type: ignore[dict-item]
            self._index(pipe, delivery.id, delivery.status, delivery.updated_at)
            cutoff = (delivery.created_at - self.retention).timestamp()
            # Index entries of expired records go here, not in a sweeper process.
            for status in (None, *DeliveryStatus):
                pipe.zremrangebyscore(_index_key(status), "-inf", cutoff)
            pipe.execute()

    def delete(self, delivery_id: str) -> None:
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(_delivery_key(delivery_id), _attempts_key(delivery_id))
            for status in (None, *DeliveryStatus):
                pipe.zrem(_index_key(status), delivery_id)
            pipe.execute()

    def record_attempt(self, delivery_id: str, attempt: Attempt, status: DeliveryStatus,
                       next_attempt_at: datetime | None) -> None:
        """Append an attempt and move the delivery to the status it led to, atomically."""
        moment = now()
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(_attempts_key(delivery_id), attempt.model_dump_json())
            self._set_status(pipe, delivery_id, status, next_attempt_at, moment)
            pipe.execute()

    def set_status(self, delivery_id: str, status: DeliveryStatus,
                   next_attempt_at: datetime | None = None) -> None:
        with self.redis.pipeline(transaction=True) as pipe:
            self._set_status(pipe, delivery_id, status, next_attempt_at, now())
            pipe.execute()

    def _set_status(self, pipe: redis.client.Pipeline, delivery_id: str, status: DeliveryStatus,
                    next_attempt_at: datetime | None, moment: datetime) -> None:
        pipe.hset(
            _delivery_key(delivery_id),
            mapping={
                "status": status.value,
                "updated_at": isoformat(moment),
                "next_attempt_at": isoformat(next_attempt_at) if next_attempt_at else "",
            },
        )
        self._index(pipe, delivery_id, status, moment)

    def load(self, delivery_id: str) -> tuple[Delivery, bytes]:
        """The delivery with all its attempts, and the body it sends."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(_delivery_key(delivery_id))
            pipe.lrange(_attempts_key(delivery_id), 0, -1)
            fields, attempts = pipe.execute()
        if not fields:
            raise DeliveryNotFound(delivery_id)
        return _delivery(fields, attempts), fields[b"body"]

    def get(self, delivery_id: str) -> Delivery:
        return self.load(delivery_id)[0]

    def recent(self, status: DeliveryStatus | None = None, limit: int = 50) -> list[Delivery]:
        """The most recently changed deliveries first, optionally of one status."""
        raw_ids = cast(list[bytes], self.redis.zrange(_index_key(status), 0, limit - 1, desc=True))
        ids = [raw.decode() for raw in raw_ids]
        with self.redis.pipeline(transaction=False) as pipe:
            for delivery_id in ids:
                pipe.hmget(_delivery_key(delivery_id), _FIELDS)
                pipe.lrange(_attempts_key(delivery_id), 0, -1)
            replies = pipe.execute()
        deliveries = []
        for values, attempts in zip(replies[::2], replies[1::2], strict=True):
            if values[0] is not None:  # expired between the two reads
                fields = {name.encode(): value for name, value in zip(_FIELDS, values, strict=True)}
                deliveries.append(_delivery(fields, attempts))
        return deliveries

    def count(self, status: DeliveryStatus | None = None) -> int:
        return int(self.redis.zcard(_index_key(status)))


@lru_cache(maxsize=1)
def get_store() -> DeliveryStore:
    settings = get_settings()
    return DeliveryStore(
        redis.Redis.from_url(settings.redis_url),
        retention=timedelta(days=settings.retention_days),
    )
