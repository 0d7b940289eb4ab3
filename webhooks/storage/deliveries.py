"""The Redis record of each delivery: its fields, body, attempts, indexes and claims.

Kept under the keys of :mod:`.keys`. Every write is one MULTI/EXEC transaction or
one Lua script, so a reader never sees an attempt without the status it led to.
Keys expire ``retention`` after their last change; the indexes are trimmed by
score when deliveries are created.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache

import redis

from ..clock import isoformat, now
from ..errors import DeliveryConflict, DeliveryNotFound
from ..models import FINAL_STATUSES, Attempt, Delivery, DeliveryStatus, Run
from ..settings import get_settings
from . import keys
from .connection import get_redis, persist, transaction, zrange_ids
from .isolation import Entry, destination, enter_args, entry, leave_args
from .schedule import Schedule
from .scripts import Script, fields

__all__ = ["Claim", "ClaimOutcome", "DeliveryStore", "get_store"]


class ClaimOutcome(StrEnum):
    """What claiming an attempt found."""

    CLAIMED = "claimed"  # go ahead: the attempt is this worker's until the lease ends
    MISSING = "missing"  # no record (expired or deleted)
    STALE = "stale"  # the message is of a cycle that redeliver replaced
    FINAL = "final"  # delivered or exhausted already
    RECORDED = "recorded"  # this attempt was made already
    BUSY = "busy"  # this attempt is running elsewhere


@dataclass(frozen=True)
class Claim:
    """What claiming an attempt found, with what the attempt needs when it is CLAIMED."""

    outcome: ClaimOutcome
    url: str = ""
    endpoint_id: str | None = None
    body: bytes = b""
    number: int = 0
    endpoint: bytes | None = None  # the endpoint's JSON, read with the claim (None: gone)
    entry: Entry | None = None  # what entering the destination said (None: not tried)
    destination: str | None = None  # as stored with the record (None: an older record)

#: Deliveries per create script call: big enough to cost Redis little per delivery,
#: small enough not to hold it for long (about 5 ms).
CREATE_SLICE = 500

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
    """Owns every delivery's record: fields and body, attempts, status indexes, the
    overdue index, and the claim and record steps of each attempt."""

    def __init__(self, client: redis.Redis, retention: timedelta) -> None:
        self._redis = client
        self.retention = retention
        self._claim_script = Script(client, "claim_attempt")
        self._record_script = Script(client, "record_attempt")
        self._abandon_script = Script(client, "abandon_attempt")
        self._create_script = Script(client, "create_deliveries")

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

    def create_many(self, deliveries: Sequence[Delivery], body: bytes | Sequence[bytes], *,
                    push: tuple[str, Sequence[str]] | None = None,
                    park_at: float | None = None) -> set[str]:
        """Write new deliveries (``body`` shared, or one per delivery), each with its
        first run: a message pushed to a queue's list (``push``: the list's key and a
        message per delivery), parked until ``park_at``, or neither (the caller
        publishes). Idempotent: returns the ids that were there already, which get
        nothing written. Raises :class:`~webhooks.errors.DeliveryConflict`, writing
        nothing, if one of those was stored with another body.

        Atomic per slice of :data:`CREATE_SLICE` deliveries (one Lua call each): a
        record and its message both exist or neither does.
        """
        if not deliveries:
            return set()
        bodies = [body] * len(deliveries) if isinstance(body, bytes) else list(body)
        messages = list(push[1]) if push else [""] * len(deliveries)
        existing: set[str] = set()
        for first in range(0, len(deliveries), CREATE_SLICE):
            chunk = slice(first, first + CREATE_SLICE)
            existing |= self._create(deliveries[chunk], bodies[chunk], messages[chunk],
                                     push[0] if push else "", park_at)
        return existing

    def _create(self, deliveries: Sequence[Delivery], bodies: Sequence[bytes],
                messages: Sequence[str], queue_key: str, park_at: float | None) -> set[str]:
        (status,) = {delivery.status for delivery in deliveries}
        numbered: dict[bytes, int] = {}  # a fan-out shares one body: it is sent once
        items: list[str | bytes | float | int] = []
        stamps: dict[datetime, str] = {}  # a batch shares its creation time and URLs:
        destinations: dict[tuple[str, str | None], str] = {}  # each is worked out once
        for delivery, body, message in zip(deliveries, bodies, messages, strict=True):
            number = numbered.setdefault(body, len(numbered) + 1)
            # The destination goes with the record, so that the claim can enter it.
            target = (delivery.url, delivery.endpoint_id)
            if target not in destinations:
                destinations[target] = destination(*target)
            fields: list[str] = ["destination", destinations[target]]
            for name in _FIELDS:
                value = getattr(delivery, name)
                if isinstance(value, datetime):
                    value = stamps.get(value) or stamps.setdefault(value, isoformat(value))
                if value is not None:  # absent fields read back as None
                    fields += [name, str(value)]
            items += [delivery.id, delivery.endpoint_id or "", number,
                      delivery.updated_at.timestamp(),
                      (delivery.next_attempt_at or delivery.created_at).timestamp(), message,
                      park_at if park_at is not None else "", len(fields) // 2, *fields]
        cutoff = (deliveries[0].created_at - self.retention).timestamp()
        reply = self._create_script(
            keys={"all_index_key": keys.deliveries(), "status_index_key": keys.deliveries(status),
                  "due_key": keys.due(), "scheduled_key": keys.scheduled(),
                  "queue_key": queue_key,
                  "trim_keys": [keys.deliveries(s) for s in (None, *DeliveryStatus)]},
            args={"cutoff": cutoff, "ttl": int(self.retention.total_seconds()),
                  "delivery_template": keys.template(keys.delivery),
                  "endpoint_template": keys.template(keys.endpoint_deliveries),
                  "body_count": len(numbered), "rest": [*numbered, *items]})
        if reply[0] == b"conflict":
            raise DeliveryConflict(reply[1].decode())
        return {member.decode() for member in reply[1:]}

    def create(self, delivery: Delivery, body: bytes) -> set[str]:
        return self.create_many([delivery], body)

    def add_attempts(self, attempts: Mapping[str, Attempt]) -> None:
        """Append an attempt to each delivery's list, in one round trip (bulk seeding)."""
        with self._redis.pipeline(transaction=False) as pipe:
            for delivery_id, attempt in attempts.items():
                pipe.rpush(keys.attempts(delivery_id), attempt.model_dump_json())
            pipe.execute()

    def delete_many(self, delivery_ids: Sequence[str]) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
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
        reply = fields(self._claim_script(
            keys={"delivery_key": keys.delivery(run.delivery_id),
                  "attempts_key": keys.attempts(run.delivery_id), "running_key": keys.running()},
            args={"cycle": run.cycle, "retries": run.retries, "now": now_,
                  "lease_until": now_ + lease, "member": run.member,
                  "endpoint_template": keys.template(keys.endpoint),
                  **enter_args(get_settings())}))
        outcome = ClaimOutcome(reply["outcome"].decode())
        if outcome is ClaimOutcome.MISSING:
            return Claim(outcome)
        entered = {name.removeprefix("entry_"): value for name, value in reply.items()
                   if name.startswith("entry_")}
        return Claim(outcome, url=reply["url"].decode(),
                     endpoint_id=reply["endpoint_id"].decode() or None,
                     body=reply.get("body", b""), number=int(reply["number"]),
                     endpoint=reply.get("endpoint") or None,
                     entry=entry(entered) if entered else None,
                     destination=reply["destination"].decode() or None)

    def record_attempt(self, run: Run, attempt: Attempt, status: DeliveryStatus,
                       next_attempt_at: datetime | None = None, *, park: bool = False,
                       stop_reason: str | None = None, destination: str | None = None,
                       persist_for: float = 0.0) -> None:
        """Append an attempt, move the delivery to the status it led to and release the
        attempt's claim, atomically (one Lua call); with ``park``, also schedule the next
        run in Redis; with ``destination``, also leave it, moving its circuit breaker.

        The attempt was made, so losing its record would mean making it again:
        while Redis cannot be reached, the write is tried again for up to
        ``persist_for`` seconds (it is safe to repeat).
        """
        moment = now()
        waiting = status not in FINAL_STATUSES and next_attempt_at is not None
        persist(lambda: self._record_script(
            keys={"delivery_key": keys.delivery(run.delivery_id),
                  "attempts_key": keys.attempts(run.delivery_id),
                  "running_key": keys.running(), "scheduled_key": keys.scheduled(),
                  "due_key": keys.due(), "all_index_key": keys.deliveries(),
                  "status_index_key": keys.deliveries(status),
                  "other_index_keys": [keys.deliveries(other) for other in DeliveryStatus
                                       if other is not status]},
            args={"delivery_id": run.delivery_id, "number": attempt.number,
                  "attempt": attempt.model_dump_json(),
                  "status": status.value, "updated_at": isoformat(moment),
                  "next_attempt_at": _hash_value(next_attempt_at),
                  "stop_reason": _hash_value(stop_reason), "member": run.member,
                  "next_member": run.next().member,
                  "park_at": next_attempt_at.timestamp() if park and next_attempt_at else "",
                  "due_at": next_attempt_at.timestamp() if waiting and next_attempt_at else "",
                  "updated_score": moment.timestamp(),
                  "ttl": int(self.retention.total_seconds()),
                  **leave_args(get_settings(), destination, attempt.succeeded,
                               attempt.duration_ms)}),
                persist_for, f"recording attempt {attempt.number} of {run.delivery_id}")

    def renew_claims(self, held: Sequence[tuple[Run, str | None]], until: float) -> None:
        """Extend the claims of attempts in flight, and their destination slots, to
        ``until``; a claim that is gone (recorded, or lapsed and taken) stays gone."""
        with self._redis.pipeline(transaction=False) as pipe:
            for run, dest in held:
                pipe.zadd(keys.running(), {run.member: until}, xx=True)
                if dest:
                    pipe.zadd(keys.destination_inflight(dest), {run.member: until}, xx=True)
            pipe.execute()

    def abandon_attempt(self, run: Run) -> bool:
        """Release a claimed attempt its worker stopped, and its destination slot; the run
        is due again now. False if it was no longer held."""
        return bool(self._abandon_script(
            keys={"delivery_key": keys.delivery(run.delivery_id),
                  "running_key": keys.running(), "scheduled_key": keys.scheduled()},
            args={"member": run.member, "now": time.time(),
                  "inflight_template": keys.template(keys.destination_inflight),
                  "waiting_template": keys.template(keys.destination_waiting)}))

    def set_status(self, delivery_id: str, status: DeliveryStatus,
                   next_attempt_at: datetime | None = None,
                   stop_reason: str | None = None, release: Run | None = None) -> None:
        """Move a delivery to ``status``; with ``release``, also let go of that run's
        attempt claim, in the same transaction."""
        with self._redis.pipeline(transaction=True) as pipe:
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
        with self._redis.pipeline(transaction=True) as pipe:
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

        return transaction(self._redis, start, key)

    def queues(self, delivery_ids: Sequence[str]) -> list[str | None]:
        """The Celery queue of each delivery (None: the default queue)."""
        with self._redis.pipeline(transaction=False) as pipe:
            for delivery_id in delivery_ids:
                pipe.hget(keys.delivery(delivery_id), "queue")
            return [value.decode() if value else None for value in pipe.execute()]

    def statuses(self, delivery_ids: Sequence[str]) -> list[DeliveryStatus | None]:
        with self._redis.pipeline(transaction=False) as pipe:
            for delivery_id in delivery_ids:
                pipe.hget(keys.delivery(delivery_id), "status")
            raw = pipe.execute()
        return [DeliveryStatus(value.decode()) if value else None for value in raw]

    def load(self, delivery_id: str) -> tuple[Delivery, bytes]:
        """The delivery with all its attempts, and the body it sends."""
        with self._redis.pipeline(transaction=False) as pipe:
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
        ids = zrange_ids(self._redis, keys.deliveries(status), 0, limit - 1, desc=True)
        with self._redis.pipeline(transaction=False) as pipe:
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
        return int(self._redis.zcard(keys.deliveries(status)))

    def stats(self, overdue_after: float) -> dict[str, int]:
        """Deliveries by status, and how many unfinished ones are past due by ``overdue_after``."""
        cutoff = now().timestamp() - overdue_after
        with self._redis.pipeline(transaction=False) as pipe:
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
        self._redis.zadd(keys.due(), {delivery_id: due}, xx=True)

    def overdue(self, older_than: float, limit: int) -> list[str]:
        """Unfinished deliveries whose next attempt was due before ``older_than``."""
        return zrange_ids(self._redis, keys.due(), "-inf", older_than, byscore=True, limit=limit)


@lru_cache(maxsize=1)
def get_store() -> DeliveryStore:
    """The process's delivery store, on the shared client."""
    return DeliveryStore(get_redis(), retention=timedelta(days=get_settings().retention_days))
