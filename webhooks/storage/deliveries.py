"""The Redis record of each delivery: its fields, body, attempts, indexes and claims.

Kept under the keys of :mod:`.keys`. Every write is one MULTI/EXEC transaction or
one Lua script, so a reader never sees an attempt without the status it led to.
Keys expire ``retention`` after their last change; the indexes are trimmed by
score when deliveries are created.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import lru_cache, partial
from typing import cast

import redis

from ..clock import isoformat, now
from ..errors import DeliveryConflict, DeliveryNotFound, TenantNotFound
from ..models import FINAL_STATUSES, Attempt, Delivery, DeliveryStatus, Run
from ..settings import get_settings
from . import keys
from .connection import get_redis, persist, transaction, zrange_ids
from .counters import attempt_args, metric_keys
from .isolation import Entry, destination, enter_args, entry, leave_args
from .scripts import Script, fields

__all__ = ["Claim", "ClaimOutcome", "DeliveryStore", "Position", "get_store"]


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
    tenant_id: str | None = None
    endpoint_id: str | None = None
    event_type: str = ""
    body: bytes = b""
    number: int = 0
    endpoint: bytes | None = None  # the endpoint's JSON, read with the claim (None: gone)
    entry: Entry | None = None  # what entering the destination said (None: not tried)
    destination: str | None = None  # as stored with the record (None: an older record)


#: Deliveries forgotten per round trip when their tenant is deleted.
FORGET_BATCH = 1000

#: Most index entries one page reads when it filters as it reads (an endpoint's
#: deliveries of one status), so that a sparse filter costs a bounded time.
SCAN_LIMIT = 5000

#: Where a page of deliveries ended: the last entry's index score and id.
Position = tuple[float, str]

#: Deliveries per create script call: big enough to cost Redis little per delivery,
#: small enough not to hold it for long (about 5 ms).
CREATE_SLICE = 500

_FIELDS = (
    "id",
    "url",
    "tenant_id",
    "endpoint_id",
    "event_id",
    "event_type",
    "status",
    "created_at",
    "updated_at",
    "next_attempt_at",
    "cycle",
    "cycle_offset",
    "stop_reason",
    "queue",
)
_OPTIONAL = ("next_attempt_at", "tenant_id", "endpoint_id", "stop_reason", "queue")


def _scopes(tenant_id: str | None) -> list[Callable[..., str]]:
    return [keys.deliveries] + ([partial(keys.tenant_deliveries, tenant_id)] if tenant_id else [])


def _every_index(tenant_id: str | None) -> list[str]:
    """Every index key a delivery of this tenant (or of none) can be in."""
    into, out_of, _ = _indexes(DeliveryStatus.PENDING, tenant_id)
    return _created_indexes(tenant_id) + into + out_of


def _created_indexes(tenant_id: str | None) -> list[str]:
    """The indexes of every delivery by creation time (all, and the tenant's): entered
    once, never moved, so that a log read page by page stays in place."""
    return [scope(None) for scope in _scopes(tenant_id)]


def _indexes(
    status: DeliveryStatus, tenant_id: str | None
) -> tuple[list[str], list[str], list[str]]:
    """The status index keys a delivery in ``status`` is in, those it is not in, and the
    status of each of the latter (the scripts leave only those of the status it had)."""
    scopes = _scopes(tenant_id)
    into = [scope(status) for scope in scopes]
    leaving = [
        (scope(other), other.value)
        for scope in scopes
        for other in DeliveryStatus
        if other is not status
    ]
    return into, [key for key, _ in leaving], [value for _, value in leaving]


def _delivery(fields: Mapping[bytes, bytes | None], attempts: list[bytes]) -> Delivery:
    values = {
        key.decode(): value.decode()
        for key, value in fields.items()
        if key != b"body" and value is not None
    }
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
        self._status_script = Script(client, "set_status")

    def create_many(
        self,
        deliveries: Sequence[Delivery],
        body: bytes | Sequence[bytes],
        *,
        push: tuple[str, Sequence[str]] | None = None,
        park_at: float | None = None,
        trace: str = "",
    ) -> set[str]:
        """Write new deliveries (``body`` shared, or one per delivery), each with its
        first run: a message pushed to a queue's list (``push``: the list's key and a
        message per delivery), parked until ``park_at``, or neither (the caller
        publishes). Idempotent: returns the ids that were there already, which get
        nothing written. Raises :class:`~webhooks.errors.DeliveryConflict`, writing
        nothing, if one of those was stored with another body. ``trace``: the
        producer's trace context (JSON), kept for the runs published later.

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
            existing |= self._create(
                deliveries[chunk],
                bodies[chunk],
                messages[chunk],
                push[0] if push else "",
                park_at,
                trace,
            )
        return existing

    def _create(
        self,
        deliveries: Sequence[Delivery],
        bodies: Sequence[bytes],
        messages: Sequence[str],
        queue_key: str,
        park_at: float | None,
        trace: str,
    ) -> set[str]:
        (status,) = {delivery.status for delivery in deliveries}
        (tenant_id,) = {delivery.tenant_id for delivery in deliveries}
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
            if trace:
                fields += ["trace", trace]
            for name in _FIELDS:
                value = getattr(delivery, name)
                if isinstance(value, datetime):
                    value = stamps.get(value) or stamps.setdefault(value, isoformat(value))
                if value is not None:  # absent fields read back as None
                    fields += [name, str(value)]
            items += [
                delivery.id,
                delivery.endpoint_id or "",
                number,
                delivery.updated_at.timestamp(),
                (delivery.next_attempt_at or delivery.created_at).timestamp(),
                message,
                park_at if park_at is not None else "",
                len(fields) // 2,
                *fields,
            ]
        cutoff = (deliveries[0].created_at - self.retention).timestamp()
        into, out_of, _ = _indexes(status, tenant_id)
        into = _created_indexes(tenant_id) + into
        reply = self._create_script(
            keys={
                "due_key": keys.due(),
                "scheduled_key": keys.scheduled(),
                "queue_key": queue_key,
                "tenant_key": keys.tenant(tenant_id) if tenant_id else "",
                "metrics_key": metric_keys(get_settings())["metrics_key"],
                "index_keys": [*into, *out_of],
            },
            args={
                "cutoff": cutoff,
                "ttl": int(self.retention.total_seconds()),
                "delivery_template": keys.template(keys.delivery),
                "endpoint_template": keys.template(keys.endpoint_deliveries),
                "index_count": len(into),
                "body_count": len(numbered),
                "rest": [*numbered, *items],
            },
        )
        if reply[0] == b"conflict":
            raise DeliveryConflict(reply[1].decode())
        if reply[0] == b"no_tenant":
            raise TenantNotFound(str(tenant_id))
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
        """Forget deliveries: their records, attempts, every index entry and their next
        run in the schedule. A message still queued for one is dropped at its claim."""
        with self._redis.pipeline(transaction=False) as pipe:
            for delivery_id in delivery_ids:
                pipe.hmget(
                    keys.delivery(delivery_id), "tenant_id", "endpoint_id", "cycle", "cycle_offset"
                )
                pipe.llen(keys.attempts(delivery_id))
            replies = pipe.execute()
        with self._redis.pipeline(transaction=True) as pipe:
            for delivery_id, (tenant_id, endpoint_id, cycle, offset), made in zip(
                delivery_ids, replies[::2], replies[1::2], strict=True
            ):
                tenant = tenant_id.decode() if tenant_id else None
                pipe.delete(keys.delivery(delivery_id), keys.attempts(delivery_id))
                pipe.zrem(keys.due(), delivery_id)
                for key in _every_index(tenant):
                    pipe.zrem(key, delivery_id)
                if endpoint_id:
                    pipe.zrem(keys.endpoint_deliveries(endpoint_id.decode()), delivery_id)
                run = Run(delivery_id, int(cycle or 0), int(made) - int(offset or 0))
                for key in (keys.scheduled(), keys.promoting()):
                    pipe.zrem(key, run.member)
            pipe.execute()

    def forget_tenant(self, tenant_id: str) -> int:
        """Forget every delivery of a tenant and its indexes; returns how many."""
        index, forgotten = keys.tenant_deliveries(tenant_id), 0
        while batch := zrange_ids(self._redis, index, 0, FORGET_BATCH - 1):
            self.delete_many(batch)
            forgotten += len(batch)
        self._redis.delete(
            *(keys.tenant_deliveries(tenant_id, status) for status in (None, *DeliveryStatus))
        )
        return forgotten

    def delete(self, delivery_id: str) -> None:
        self.delete_many([delivery_id])

    def claim_attempt(self, run: Run, lease: float) -> Claim:
        """Claim the attempt ``run`` makes, with what it needs to send, in one step: the
        delivery's fields, its endpoint, and a place at its destination (see isolation)."""
        now_ = time.time()
        reply = fields(
            self._claim_script(
                keys={
                    "delivery_key": keys.delivery(run.delivery_id),
                    "attempts_key": keys.attempts(run.delivery_id),
                    "running_key": keys.running(),
                },
                args={
                    "cycle": run.cycle,
                    "retries": run.retries,
                    "now": now_,
                    "lease_until": now_ + lease,
                    "member": run.member,
                    "endpoint_template": keys.template(keys.endpoint),
                    **enter_args(get_settings()),
                },
            )
        )
        outcome = ClaimOutcome(reply["outcome"].decode())
        if outcome is ClaimOutcome.MISSING:
            return Claim(outcome)
        entered = {
            name.removeprefix("entry_"): value
            for name, value in reply.items()
            if name.startswith("entry_")
        }
        return Claim(
            outcome,
            url=reply["url"].decode(),
            tenant_id=reply["tenant_id"].decode() or None,
            endpoint_id=reply["endpoint_id"].decode() or None,
            event_type=reply["event_type"].decode(),
            body=reply.get("body", b""),
            number=int(reply["number"]),
            endpoint=reply.get("endpoint") or None,
            entry=entry(entered) if entered else None,
            destination=reply["destination"].decode() or None,
        )

    def record_attempt(
        self,
        run: Run,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: datetime | None = None,
        *,
        park: bool = False,
        stop_reason: str | None = None,
        destination: str | None = None,
        tenant_id: str | None = None,
        persist_for: float = 0.0,
    ) -> None:
        """Append an attempt, move the delivery to the status it led to and release the
        attempt's claim, atomically (one Lua call); with ``park``, also schedule the next
        run in Redis; with ``destination``, also leave it, moving its circuit breaker.

        The attempt was made, so losing its record would mean making it again:
        while Redis cannot be reached, the write is tried again for up to
        ``persist_for`` seconds (it is safe to repeat).
        """
        moment, settings = now(), get_settings()
        waiting = status not in FINAL_STATUSES and next_attempt_at is not None
        into, out_of, leaving = _indexes(status, tenant_id)
        persist(
            lambda: self._record_script(
                keys={
                    "delivery_key": keys.delivery(run.delivery_id),
                    "attempts_key": keys.attempts(run.delivery_id),
                    "running_key": keys.running(),
                    "scheduled_key": keys.scheduled(),
                    "due_key": keys.due(),
                    **metric_keys(settings),
                    "index_keys": [*into, *out_of],
                },
                args={
                    "delivery_id": run.delivery_id,
                    "number": attempt.number,
                    "attempt": attempt.model_dump_json(),
                    "status": status.value,
                    "updated_at": isoformat(moment),
                    "next_attempt_at": _hash_value(next_attempt_at),
                    "stop_reason": _hash_value(stop_reason),
                    "member": run.member,
                    "next_member": run.next().member,
                    "park_at": next_attempt_at.timestamp() if park and next_attempt_at else "",
                    "due_at": next_attempt_at.timestamp() if waiting and next_attempt_at else "",
                    "updated_score": moment.timestamp(),
                    "ttl": int(self.retention.total_seconds()),
                    "index_count": len(into),
                    **attempt_args(attempt),
                    "index_statuses": leaving,
                    **leave_args(settings, destination, attempt.succeeded, attempt.duration_ms),
                },
            ),
            persist_for,
            f"recording attempt {attempt.number} of {run.delivery_id}",
        )

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
        return bool(
            self._abandon_script(
                keys={
                    "delivery_key": keys.delivery(run.delivery_id),
                    "running_key": keys.running(),
                    "scheduled_key": keys.scheduled(),
                },
                args={
                    "member": run.member,
                    "now": time.time(),
                    "inflight_template": keys.template(keys.destination_inflight),
                    "waiting_template": keys.template(keys.destination_waiting),
                },
            )
        )

    def set_status(
        self,
        delivery_id: str,
        status: DeliveryStatus,
        next_attempt_at: datetime | None = None,
        stop_reason: str | None = None,
        release: Run | None = None,
    ) -> None:
        """Move a delivery to ``status``; with ``release``, also let go of that run's
        attempt claim, in the same step. A delivery that is gone stays gone."""
        (owner,) = self._owners([delivery_id])
        self._set_status(
            self._redis, delivery_id, status, next_attempt_at, stop_reason, owner[1], release
        )

    def _set_status(
        self,
        client: redis.Redis | redis.client.Pipeline,
        delivery_id: str,
        status: DeliveryStatus,
        next_attempt_at: datetime | None,
        stop_reason: str | None,
        tenant_id: str | None,
        release: Run | None = None,
    ) -> None:
        moment = now()
        into, out_of, leaving = _indexes(status, tenant_id)
        waiting = status not in FINAL_STATUSES and next_attempt_at is not None
        self._status_script(
            keys={
                "delivery_key": keys.delivery(delivery_id),
                "attempts_key": keys.attempts(delivery_id),
                "due_key": keys.due(),
                "running_key": keys.running(),
                "metrics_key": metric_keys(get_settings())["metrics_key"],
                "index_keys": [*into, *out_of],
            },
            args={
                "delivery_id": delivery_id,
                "status": status.value,
                "updated_at": isoformat(moment),
                "next_attempt_at": _hash_value(next_attempt_at),
                "stop_reason": _hash_value(stop_reason),
                "due_at": next_attempt_at.timestamp() if waiting and next_attempt_at else "",
                "updated_score": moment.timestamp(),
                "ttl": int(self.retention.total_seconds()),
                "release_member": release.member if release else "",
                "index_count": len(into),
                "index_statuses": leaving,
            },
            client=client,
        )

    def _owners(
        self, delivery_ids: Sequence[str]
    ) -> list[tuple[DeliveryStatus | None, str | None]]:
        """Each delivery's status (None: no such delivery) and tenant."""
        with self._redis.pipeline(transaction=False) as pipe:
            for delivery_id in delivery_ids:
                pipe.hmget(keys.delivery(delivery_id), "status", "tenant_id")
            replies = pipe.execute()
        return [
            (
                DeliveryStatus(status.decode()) if status else None,
                tenant.decode() if tenant else None,
            )
            for status, tenant in replies
        ]

    def stop_unfinished(self, delivery_ids: Sequence[str], reason: str) -> list[str]:
        """Mark the still-unfinished deliveries among ``delivery_ids`` as exhausted."""
        stopped = []
        with self._redis.pipeline(transaction=False) as pipe:
            for delivery_id, (status, tenant_id) in zip(
                delivery_ids, self._owners(delivery_ids), strict=True
            ):
                if status is not None and status not in FINAL_STATUSES:
                    self._set_status(
                        pipe, delivery_id, DeliveryStatus.RETRIES_EXHAUSTED, None, reason, tenant_id
                    )
                    stopped.append(delivery_id)
            pipe.execute()
        return stopped

    def start_cycle(self, delivery_id: str) -> int:
        """Begin a new attempt cycle (redeliver): numbering goes on after the last attempt."""
        key = keys.delivery(delivery_id)

        def start(pipe: redis.client.Pipeline) -> int:
            cycle, tenant_id = cast(list[bytes | None], pipe.hmget(key, "cycle", "tenant_id"))
            if not pipe.exists(key):
                raise DeliveryNotFound(delivery_id)
            made = pipe.llen(keys.attempts(delivery_id))
            pipe.multi()
            pipe.hset(key, mapping={"cycle": int(cycle or 0) + 1, "cycle_offset": made})
            self._set_status(
                pipe,
                delivery_id,
                DeliveryStatus.PENDING,
                now(),
                None,
                tenant_id.decode() if tenant_id else None,
            )
            return int(cycle or 0) + 1

        return transaction(self._redis, start, key)

    def routes(self, delivery_ids: Sequence[str]) -> list[tuple[str | None, str]]:
        """Where each delivery's messages go and what they carry: its Celery queue (None:
        the default queue) and its producer's trace context ('' for none)."""
        with self._redis.pipeline(transaction=False) as pipe:
            for delivery_id in delivery_ids:
                pipe.hmget(keys.delivery(delivery_id), "queue", "trace")
            return [
                (queue.decode() if queue else None, trace.decode() if trace else "")
                for queue, trace in pipe.execute()
            ]

    def statuses(self, delivery_ids: Sequence[str]) -> list[DeliveryStatus | None]:
        """Each delivery's status; None for one that does not exist."""
        return [status for status, _ in self._owners(delivery_ids)]

    def load(self, delivery_id: str, tenant: str | None = None) -> tuple[Delivery, bytes]:
        """The delivery with all its attempts, and the body it sends. With ``tenant``,
        another tenant's delivery is not found, exactly as a missing one is."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.delivery(delivery_id))
            pipe.lrange(keys.attempts(delivery_id), 0, -1)
            fields, attempts = pipe.execute()
        if not fields or (tenant is not None and fields.get(b"tenant_id") != tenant.encode()):
            raise DeliveryNotFound(delivery_id)
        return _delivery(fields, attempts), fields[b"body"]

    def get(self, delivery_id: str, tenant: str | None = None) -> Delivery:
        return self.load(delivery_id, tenant)[0]

    def recent(
        self,
        status: DeliveryStatus | None = None,
        limit: int = 50,
        *,
        tenant: str | None = None,
        endpoint_id: str | None = None,
    ) -> list[Delivery]:
        """The first ``limit`` deliveries of :meth:`page`'s order, with every attempt."""
        ids, _ = self.page(status, limit, tenant=tenant, endpoint_id=endpoint_id)
        return self._read_many(ids)

    def page(
        self,
        status: DeliveryStatus | None = None,
        limit: int = 50,
        *,
        tenant: str | None = None,
        endpoint_id: str | None = None,
        after: Position | None = None,
    ) -> tuple[list[str], Position | None]:
        """Delivery ids, newest first: all, one tenant's or one endpoint's by creation
        time; of one status by when they reached it. Returns up to ``limit`` ids after
        the position ``after`` and where the next page starts (None: no more).

        Positions are (score, id), so a page never repeats an earlier page's ids, even
        when deliveries are added or change meanwhile. Only an endpoint's listing by
        status filters as it reads; it stops after :data:`SCAN_LIMIT` entries and may
        then return fewer than ``limit`` ids, with the position to go on from.
        """
        if endpoint_id is None:
            index = (
                keys.tenant_deliveries(tenant, status)
                if tenant is not None
                else keys.deliveries(status)
            )
            wanted = None
        else:
            index, wanted = keys.endpoint_deliveries(endpoint_id), status
        found: list[str] = []
        position, scanned = after, 0
        batch = limit + 1 if wanted is None else max(limit + 1, 200)
        while True:
            entries = self._entries_after(index, position, batch)
            statuses = self.statuses([member for member, _ in entries]) if wanted else []
            for n, (member, score) in enumerate(entries):
                if len(found) == limit:
                    return found, position  # this entry is proof that more follow
                position = (score, member)
                if wanted is None or statuses[n] is wanted:
                    found.append(member)
            scanned += len(entries)
            if len(entries) < batch:
                return found, None
            if scanned >= SCAN_LIMIT:
                return found, position

    def _entries_after(
        self, index: str, position: Position | None, count: int
    ) -> list[tuple[str, float]]:
        """Up to ``count`` (id, score) entries of the index after ``position``, in
        descending order of score, then id (as ZRANGE REV orders ties)."""
        head: list[tuple[str, float]] = []
        if position is None:
            upper = "+inf"
        else:
            score, last = position
            # Ties with the position's score: those sorting before its id come next.
            ties = zrange_ids(self._redis, index, score, score, byscore=True)
            head = [
                (member, score) for member in reversed(ties) if member.encode() < last.encode()
            ][:count]
            upper = f"({score!r}"
        if len(head) == count:
            return head
        rest = cast(
            list[tuple[bytes, float]],
            self._redis.zrange(
                index,
                upper,
                "-inf",
                byscore=True,
                desc=True,
                offset=0,
                num=count - len(head),
                withscores=True,
            ),
        )
        return head + [(member.decode(), float(score)) for member, score in rest]

    def summaries(self, ids: Sequence[str]) -> list[tuple[Delivery, int]]:
        """Each delivery with only its last attempt, and how many attempts it has;
        deliveries that are gone are left out."""
        with self._redis.pipeline(transaction=False) as pipe:
            for delivery_id in ids:
                pipe.hmget(keys.delivery(delivery_id), _FIELDS)
                pipe.lrange(keys.attempts(delivery_id), -1, -1)
                pipe.llen(keys.attempts(delivery_id))
            replies = pipe.execute()
        found = []
        for values, last, count in zip(replies[::3], replies[1::3], replies[2::3], strict=True):
            if values[0] is not None:
                fields = {name.encode(): value for name, value in zip(_FIELDS, values, strict=True)}
                found.append((_delivery(fields, last), int(count)))
        return found

    def _read_many(self, ids: Sequence[str]) -> list[Delivery]:
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

    def stats(self, overdue_after: float, tenant: str | None = None) -> dict[str, int]:
        """Deliveries by status, how many unfinished ones are past due by
        ``overdue_after``, and (for all tenants) how many retries are parked."""
        cutoff = now().timestamp() - overdue_after
        if tenant is not None:
            return self._tenant_stats(tenant, cutoff)
        with self._redis.pipeline(transaction=False) as pipe:
            for status in DeliveryStatus:
                pipe.zcard(keys.deliveries(status))
            pipe.zcount(keys.due(), "-inf", cutoff)
            pipe.zcard(keys.scheduled())
            *counts, overdue, parked = pipe.execute()
        stats = {
            status.value: int(count) for status, count in zip(DeliveryStatus, counts, strict=True)
        }
        return {**stats, "overdue": int(overdue), "parked": int(parked)}

    def _tenant_stats(self, tenant: str, cutoff: float) -> dict[str, int]:
        with self._redis.pipeline(transaction=False) as pipe:
            for status in DeliveryStatus:
                pipe.zcard(keys.tenant_deliveries(tenant, status))
            counts = pipe.execute()
        stats = {
            status.value: int(count) for status, count in zip(DeliveryStatus, counts, strict=True)
        }
        # Overdue: the tenant's unfinished deliveries, looked up in the due index.
        overdue = 0
        for status in (DeliveryStatus.PENDING, DeliveryStatus.RETRYING):
            ids = zrange_ids(self._redis, keys.tenant_deliveries(tenant, status), 0, -1)
            for first in range(0, len(ids), 1000):
                scores = self._redis.zmscore(keys.due(), ids[first : first + 1000])
                overdue += sum(1 for score in scores if score is not None and score <= cutoff)
        return {**stats, "overdue": overdue}

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
