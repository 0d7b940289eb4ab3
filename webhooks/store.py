"""Deliveries and their attempts, kept in Redis under the keys of :mod:`webhooks.keys`.

Every write is one MULTI/EXEC transaction, so a reader never sees an attempt
without the status it led to. Keys expire ``retention`` after their last change;
the indexes are trimmed by score when deliveries are created.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import redis

from . import keys, lua
from .clock import isoformat, now
from .errors import DeliveryNotFound
from .isolation import MAX_COOLDOWN, destination
from .models import FINAL_STATUSES, Attempt, Delivery, DeliveryStatus
from .redisutil import transaction, zrange_ids
from .schedule import Run, Schedule
from .settings import get_settings

__all__ = ["Claim", "DeliveryStore", "get_store"]


@dataclass(frozen=True)
class Claim:
    """What claiming an attempt found: ``claimed`` (go ahead), or why not: ``missing``,
    ``stale`` (an older cycle), ``final``, ``recorded`` (already made), ``busy`` (running)."""

    outcome: str
    url: str = ""
    endpoint_id: str | None = None
    body: bytes = b""
    number: int = 0
    endpoint: bytes | None = None  # the endpoint's JSON, read with the claim (None: gone)
    entry: tuple[str, str, str] | None = None  # what entering the destination said (None:
    # not tried): see isolation.entry
    destination: str | None = None  # as stored with the record (None: an older record)

_FIELDS = ("id", "url", "event_id", "event_type", "status", "created_at", "updated_at",
           "next_attempt_at", "endpoint_id", "cycle", "cycle_offset", "stop_reason", "queue")
_OPTIONAL = ("next_attempt_at", "endpoint_id", "stop_reason", "queue")


def _delivery(fields: Mapping[bytes, bytes | None], attempts: list[bytes]) -> Delivery:
    values = {key.decode(): value.decode() for key, value in fields.items()
              if key != b"body" and value is not None}
    for name in _OPTIONAL:
        values[name] = values.get(name) or None  # type: ignore[assignment]
    return Delivery.model_validate(
        {**values, "attempts": [Attempt.model_validate_json(raw) for raw in attempts]}
    )


def _hash_value(value: object) -> str:
    if isinstance(value, datetime):
        return isoformat(value)
    return "" if value is None else str(value)


class DeliveryStore:
    def __init__(self, client: redis.Redis, retention: timedelta) -> None:
        self.redis = client
        self.retention = retention
        self._claim_script = client.register_script(lua.CLAIM_ATTEMPT)
        self._record_script = client.register_script(lua.RECORD_ATTEMPT)

    def _index(self, pipe: redis.client.Pipeline, delivery_id: str, status: DeliveryStatus,
               moment: datetime) -> None:
        score = moment.timestamp()
        pipe.zadd(keys.deliveries(), {delivery_id: score})
        for other in DeliveryStatus:
            if other is not status:
                pipe.zrem(keys.deliveries(other), delivery_id)
        pipe.zadd(keys.deliveries(status), {delivery_id: score})
        ttl = int(self.retention.total_seconds())
        pipe.expire(keys.delivery(delivery_id), ttl)
        pipe.expire(keys.attempts(delivery_id), ttl)

    def create_many(self, deliveries: Sequence[Delivery], body: bytes | Sequence[bytes]) -> None:
        """Write new deliveries, all or none, in one round trip; ``body`` is shared or per
        delivery."""
        if not deliveries:
            return
        bodies = [body] * len(deliveries) if isinstance(body, bytes) else list(body)
        cutoff = (deliveries[0].created_at - self.retention).timestamp()
        ttl = int(self.retention.total_seconds())
        updated: dict[DeliveryStatus, dict[str, float]] = {}
        due: dict[str, float] = {}
        by_endpoint: dict[str, dict[str, float]] = {}
        stamps: dict[datetime, str] = {}  # a batch shares its creation time and URLs:
        destinations: dict[tuple[str, str | None], str] = {}  # each is worked out once
        with self.redis.pipeline(transaction=True) as pipe:
            for delivery, body in zip(deliveries, bodies, strict=True):
                # The destination goes with the record, so that the claim can enter it.
                target = (delivery.url, delivery.endpoint_id)
                if target not in destinations:
                    destinations[target] = destination(*target)
                fields: dict[str, str | bytes] = {"body": body,
                                                  "destination": destinations[target]}
                for name in _FIELDS:
                    value = getattr(delivery, name)
                    if isinstance(value, datetime):
                        value = stamps.get(value) or stamps.setdefault(value, isoformat(value))
                    if value is not None:  # absent fields read back as None
                        fields[name] = str(value)
                pipe.hset(keys.delivery(delivery.id), mapping=fields)  # type: ignore[arg-type]
                pipe.expire(keys.delivery(delivery.id), ttl)
                updated.setdefault(delivery.status, {})[delivery.id] = (
                    delivery.updated_at.timestamp())
                due[delivery.id] = (delivery.next_attempt_at or delivery.created_at).timestamp()
                if delivery.endpoint_id:
                    by_endpoint.setdefault(delivery.endpoint_id, {})[delivery.id] = (
                        delivery.created_at.timestamp())
            # The indexes take a whole batch per command: measured, one Lua call per
            # delivery cost Redis 32 us each; these cost a few.
            for status, scores in updated.items():
                pipe.zadd(keys.deliveries(), scores)
                pipe.zadd(keys.deliveries(status), scores)
            pipe.zadd(keys.due(), due)
            for endpoint_id, scores in by_endpoint.items():
                pipe.zadd(keys.endpoint_deliveries(endpoint_id), scores)
                pipe.zremrangebyscore(keys.endpoint_deliveries(endpoint_id), "-inf", cutoff)
            # Index entries of expired records go here, not in a sweeper process.
            for status in (None, *DeliveryStatus):
                pipe.zremrangebyscore(keys.deliveries(status), "-inf", cutoff)
            pipe.execute()

    def create(self, delivery: Delivery, body: bytes) -> None:
        self.create_many([delivery], body)

    def delete_many(self, delivery_ids: Sequence[str]) -> None:
        with self.redis.pipeline(transaction=True) as pipe:
            for delivery_id in delivery_ids:
                pipe.delete(keys.delivery(delivery_id), keys.attempts(delivery_id))
                pipe.zrem(keys.due(), delivery_id)
                for status in (None, *DeliveryStatus):
                    pipe.zrem(keys.deliveries(status), delivery_id)
            pipe.execute()

    def delete(self, delivery_id: str) -> None:
        self.delete_many([delivery_id])

    def claim_attempt(self, run: Run, lease: float) -> Claim:
        """Claim the attempt ``run`` makes, with what it needs to send, in one step: the
        delivery's fields, its endpoint, and a place at its destination (see isolation)."""
        now_ = time.time()
        reply = self._claim_script(
            keys=[keys.delivery(run.delivery_id), keys.attempts(run.delivery_id), keys.running()],
            args=[run.cycle, run.retries, now_, now_ + lease, run.member, keys.endpoint("%s"),
                  keys.destination_inflight("%s"), keys.destination_breaker("%s"),
                  get_settings().destination_concurrency, keys.destination_waiting("%s")])
        if reply[0] == b"missing":
            return Claim("missing")
        # The body and the endpoint's JSON stay bytes; the rest is text.
        text = [value.decode() if isinstance(value, bytes) and n not in (3, 7) else value
                for n, value in enumerate(reply)]
        return Claim(text[0], url=text[1], endpoint_id=text[2] or None, body=reply[3] or b"",
                     number=int(text[4]), endpoint=reply[7] or None,
                     entry=(text[8], text[9], text[10]) if text[8] else None,
                     destination=text[11] or None)

    def record_attempt(self, run: Run, attempt: Attempt, status: DeliveryStatus,
                       next_attempt_at: datetime | None = None, *, park: bool = False,
                       stop_reason: str | None = None, destination: str | None = None) -> None:
        """Append an attempt, move the delivery to the status it led to and release the
        attempt's claim, atomically (one Lua call); with ``park``, also schedule the next
        run in Redis; with ``destination``, also leave it, moving its circuit breaker."""
        moment = now()
        waiting = status not in FINAL_STATUSES and next_attempt_at is not None
        settings = get_settings()
        self._record_script(
            keys=[keys.delivery(run.delivery_id), keys.attempts(run.delivery_id), keys.running(),
                  keys.scheduled(), keys.due(), keys.deliveries(),
                  *(keys.deliveries(s) for s in DeliveryStatus)],
            args=[run.delivery_id, attempt.model_dump_json(), status.value, isoformat(moment),
                  _hash_value(next_attempt_at), _hash_value(stop_reason), run.member,
                  run.next().member,
                  next_attempt_at.timestamp() if park and next_attempt_at else "",
                  next_attempt_at.timestamp() if waiting and next_attempt_at else "",
                  moment.timestamp(), int(self.retention.total_seconds()),
                  destination or "", int(attempt.succeeded), moment.timestamp(),
                  settings.breaker_failures, settings.breaker_cooldown_seconds, MAX_COOLDOWN,
                  attempt.duration_ms, keys.destination_inflight("%s"),
                  keys.destination_breaker("%s"), keys.destination_waiting("%s")])

    def set_status(self, delivery_id: str, status: DeliveryStatus,
                   next_attempt_at: datetime | None = None,
                   stop_reason: str | None = None, release: Run | None = None) -> None:
        """Move a delivery to ``status``; with ``release``, also let go of that run's
        attempt claim, in the same transaction."""
        with self.redis.pipeline(transaction=True) as pipe:
            self._set_status(pipe, delivery_id, status, next_attempt_at, stop_reason)
            if release is not None:
                Schedule.release(pipe, release)
            pipe.execute()

    def _set_status(self, pipe: redis.client.Pipeline, delivery_id: str, status: DeliveryStatus,
                    next_attempt_at: datetime | None, stop_reason: str | None) -> None:
        moment = now()
        if status in FINAL_STATUSES or next_attempt_at is None:
            pipe.zrem(keys.due(), delivery_id)
        else:
            pipe.zadd(keys.due(), {delivery_id: next_attempt_at.timestamp()})
        pipe.hset(keys.delivery(delivery_id), mapping={
            "status": status.value,
            "updated_at": isoformat(moment),
            "next_attempt_at": _hash_value(next_attempt_at),
            "stop_reason": _hash_value(stop_reason),
        })
        self._index(pipe, delivery_id, status, moment)

    def stop_unfinished(self, delivery_ids: Sequence[str], reason: str) -> list[str]:
        """Mark the still-unfinished deliveries among ``delivery_ids`` as exhausted."""
        statuses = self.statuses(delivery_ids)
        stopped = [delivery_id for delivery_id, status in zip(delivery_ids, statuses, strict=True)
                   if status is not None and status not in FINAL_STATUSES]
        with self.redis.pipeline(transaction=True) as pipe:
            for delivery_id in stopped:
                self._set_status(pipe, delivery_id, DeliveryStatus.RETRIES_EXHAUSTED, None, reason)
            pipe.execute()
        return stopped

    def start_cycle(self, delivery_id: str) -> int:
        """Begin a new attempt cycle (redeliver): numbering goes on after the last attempt."""
        key = keys.delivery(delivery_id)

        def start(pipe: redis.client.Pipeline) -> int:
            cycle, exists = pipe.hget(key, "cycle"), pipe.exists(key)
            if not exists:
                raise DeliveryNotFound(delivery_id)
            made = pipe.llen(keys.attempts(delivery_id))
            pipe.multi()
            pipe.hset(key, mapping={"cycle": int(cycle or 0) + 1, "cycle_offset": made})
            self._set_status(pipe, delivery_id, DeliveryStatus.PENDING, now(), None)
            return int(cycle or 0) + 1

        return transaction(self.redis, start, key)

    def queues(self, delivery_ids: Sequence[str]) -> list[str | None]:
        """The Celery queue of each delivery (None: the default queue)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for delivery_id in delivery_ids:
                pipe.hget(keys.delivery(delivery_id), "queue")
            return [value.decode() if value else None for value in pipe.execute()]

    def statuses(self, delivery_ids: Sequence[str]) -> list[DeliveryStatus | None]:
        with self.redis.pipeline(transaction=False) as pipe:
            for delivery_id in delivery_ids:
                pipe.hget(keys.delivery(delivery_id), "status")
            raw = pipe.execute()
        return [DeliveryStatus(value.decode()) if value else None for value in raw]

    def load(self, delivery_id: str) -> tuple[Delivery, bytes]:
        """The delivery with all its attempts, and the body it sends."""
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.delivery(delivery_id))
            pipe.lrange(keys.attempts(delivery_id), 0, -1)
            fields, attempts = pipe.execute()
        if not fields:
            raise DeliveryNotFound(delivery_id)
        return _delivery(fields, attempts), fields[b"body"]

    def get(self, delivery_id: str) -> Delivery:
        return self.load(delivery_id)[0]

    def recent(self, status: DeliveryStatus | None = None, limit: int = 50) -> list[Delivery]:
        """The most recently changed deliveries first, optionally of one status."""
        ids = zrange_ids(self.redis, keys.deliveries(status), 0, limit - 1, desc=True)
        with self.redis.pipeline(transaction=False) as pipe:
            for delivery_id in ids:
                pipe.hmget(keys.delivery(delivery_id), _FIELDS)
                pipe.lrange(keys.attempts(delivery_id), 0, -1)
            replies = pipe.execute()
        deliveries = []
        for values, attempts in zip(replies[::2], replies[1::2], strict=True):
            if values[0] is not None:  # expired between the two reads
                fields = {name.encode(): value for name, value in zip(_FIELDS, values, strict=True)}
                deliveries.append(_delivery(fields, attempts))
        return deliveries

    def count(self, status: DeliveryStatus | None = None) -> int:
        return int(self.redis.zcard(keys.deliveries(status)))

    def stats(self, overdue_after: float) -> dict[str, int]:
        """Deliveries by status, and how many unfinished ones are past due by ``overdue_after``."""
        cutoff = now().timestamp() - overdue_after
        with self.redis.pipeline(transaction=False) as pipe:
            for status in DeliveryStatus:
                pipe.zcard(keys.deliveries(status))
            pipe.zcount(keys.due(), "-inf", cutoff)
            pipe.zcard(keys.scheduled())
            *counts, overdue, parked = pipe.execute()
        stats = {status.value: int(count) for status, count in zip(DeliveryStatus, counts,
                                                                    strict=True)}
        return {**stats, "overdue": int(overdue), "parked": int(parked)}

    def push_due(self, delivery_id: str, due: float) -> None:
        """Move a delivery's due time in the overdue index only (the backstop's mark)."""
        self.redis.zadd(keys.due(), {delivery_id: due}, xx=True)

    def overdue(self, older_than: float, limit: int) -> list[str]:
        """Unfinished deliveries whose next attempt was due before ``older_than``."""
        return zrange_ids(self.redis, keys.due(), "-inf", older_than, byscore=True, limit=limit)


@lru_cache(maxsize=1)
def get_store() -> DeliveryStore:
    settings = get_settings()
    return DeliveryStore(
        redis.Redis.from_url(settings.redis_url),
        retention=timedelta(days=settings.retention_days),
    )
