"""The Redis record of each delivery: its fields, body, attempts, indexes and claims.

Kept under the keys of :mod:`.keys`. Every write is one MULTI/EXEC transaction or
one Lua script, so a reader never sees an attempt without the status it led to.
Keys expire ``retention`` after their last change; the indexes are trimmed by
score when deliveries are created.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any, NamedTuple, Protocol, cast

import redis

from ..clock import isoformat, lease_end, now
from ..errors import DeliveryConflict, DeliveryFinished, DeliveryNotFound, TenantNotFound
from ..ids import checked_delivery_id, checked_endpoint_id, checked_tenant_id
from ..models import FINAL_STATUSES, Attempt, Delivery, DeliveryStatus, Run
from ..settings import Settings
from .activity import activity_args, activity_keys, forget_tenant_activity
from .connection import persist, transaction, unavailable, zrange_ids
from .counters import attempt_args, metric_keys
from .destinations import (
    Entry,
    Strain,
    admission_args,
    destination,
    enter_args,
    entry,
    leave_args,
    leave_constants,
)
from .keys import Keys, template
from .scripts import Script, fields

__all__ = [
    "ArchiveTier",
    "Archived",
    "Claim",
    "ClaimOutcome",
    "DeliveryStore",
    "NextRun",
    "Position",
    "Recorded",
]


class ClaimOutcome(StrEnum):
    """What claiming an attempt found."""

    CLAIMED = "claimed"  # go ahead: the attempt is this worker's until the lease ends
    MISSING = "missing"  # no record (expired or deleted)
    STALE = "stale"  # the message is of a cycle that redeliver replaced
    FINAL = "final"  # delivered or exhausted already
    RECORDED = "recorded"  # this attempt was made already
    BUSY = "busy"  # this attempt is running elsewhere
    BEHIND = "behind"  # it waits behind the delivery before it of its ordering key


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
    test: bool = False  # a test event's: its attempts say so in a header


@dataclass(frozen=True)
class NextRun:
    """A run to claim in the same round trip as an attempt's record: the one its caller
    makes next (see :meth:`DeliveryStore.record_attempt`)."""

    run: Run
    lease: float
    #: Handed over by an earlier record: it waits in the schedule, taken out of it first.
    handed: bool = False


class Recorded(NamedTuple):
    """What recording an attempt returned."""

    #: The run waiting at the destination that the freed slot went to, for the caller.
    handed: Run | None = None
    #: The claim of the run named with the record (``then_claim``), when it was made.
    claim: Claim | None = None
    #: The handed run's claim, when the record made it (``claim_handed``).
    handed_claim: Claim | None = None


#: record_attempt.lua's arguments when no run is claimed with the record.
_NO_THEN = {"then_member": "", "then_lease_until": "", "then_handed": ""}


def _then_args(then: NextRun | None, moment: float, keep: float) -> dict[str, Any]:
    """record_attempt.lua's arguments for the claim, at ``moment``, of the run its caller
    makes next (held at least ``keep`` seconds: :func:`~webhooks.clock.lease_end`)."""
    if then is None:
        return _NO_THEN
    return {
        "then_member": then.run.member,
        # Made here, not in Lua: a Lua number given to a Redis command is printed again
        # (printf's %.17g, about 4,000 instructions in callgrind).
        "then_lease_until": lease_end(moment, then.lease, keep),
        "then_handed": "1" if then.handed else "",
    }


def _claim(reply: Mapping[str, Any], run: Run) -> Claim:
    """The claim of ``run``, from claim_attempt.lua's reply (its named fields, those
    left empty left out)."""
    outcome = ClaimOutcome(reply["outcome"].decode())
    if outcome is ClaimOutcome.MISSING:
        return Claim(outcome)
    entered = reply.get("entry")
    return Claim(
        outcome,
        url=reply["url"].decode(),
        tenant_id=reply.get("tenant_id", b"").decode() or None,
        endpoint_id=reply.get("endpoint_id", b"").decode() or None,
        event_type=reply.get("event_type", b"").decode(),
        body=reply.get("body", b""),
        number=int(reply.get("cycle_offset", 0)) + run.retries + 1,
        endpoint=reply.get("endpoint") or None,
        entry=entry(fields(entered)) if entered else None,
        destination=reply.get("destination", b"").decode() or None,
        test=reply.get("test") == b"1",
    )


#: Deliveries forgotten per round trip when their tenant is deleted.
FORGET_BATCH = 1000

#: Most index entries one page reads when it filters as it reads (an endpoint's
#: deliveries of one status), so that a sparse filter costs a bounded time.
SCAN_LIMIT = 5000

#: Where a page of deliveries ended: the last entry's index score and id.
Position = tuple[float, str]

#: Archived deliveries taken, and forgotten, per script call (about 20 ms of Redis
#: each on a 2-core machine).
ARCHIVE_SLICE = 500

#: Most ids one lookup by event id returns (an event has a delivery per endpoint).
EVENT_LIMIT = 1000


@dataclass(frozen=True)
class _Listed:
    """A page of ids, newest first, with what reading them needs to know of the tiers
    that listed them."""

    ids: list[str]
    position: Position | None
    #: The creation time of each id the archive listed, which finds its row in one
    #: day's partition.
    created: dict[str, float]
    #: The ids the archive listed and Redis's page did not (see DeliveryStore.summaries).
    archived_only: frozenset[str]
    #: What the archive read of each id it listed, when the page was read as summaries.
    summaries: dict[str, tuple[Delivery, int]]


@dataclass(frozen=True)
class Archived:
    """A finished delivery as the archiver moves it: its fields as Redis holds them
    (``body`` included) and its attempts' JSON."""

    id: str
    fields: dict[str, bytes]
    attempts: list[bytes]

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.fields["created_at"].decode())


class ArchiveTier(Protocol):
    """The delivery log's second tier (PostgreSQL, :mod:`webhooks.archive`), as the store
    reads it: finished deliveries that left Redis. Every method raises
    :class:`~webhooks.errors.ArchiveUnavailable` when the archive cannot answer."""

    def load(self, delivery_id: str, tenant: str | None) -> tuple[Delivery, bytes] | None:
        """The newest archived delivery with this id, with every attempt, and its body."""

    def read(
        self, ids: Sequence[str], created: Mapping[str, float] | None = None
    ) -> dict[str, Delivery]:
        """The archived deliveries among ``ids``, with every attempt. ``created``: each
        one's creation time, when known, which narrows the search to its day."""

    def summaries(
        self, ids: Sequence[str], created: Mapping[str, float] | None = None
    ) -> dict[str, tuple[Delivery, int]]:
        """The archived deliveries among ``ids``, each with its last attempt and how
        many it has; ``created`` as for :meth:`read`."""

    def entries(
        self,
        status: DeliveryStatus | None,
        tenant: str | None,
        endpoint_id: str | None,
        after: Position | None,
        count: int,
    ) -> list[tuple[str, float, float]]:
        """Up to ``count`` (id, score, creation time) entries after ``after``, in
        :meth:`DeliveryStore.page`'s order for the same filter."""

    def listing(
        self,
        status: DeliveryStatus | None,
        tenant: str | None,
        endpoint_id: str | None,
        after: Position | None,
        count: int,
    ) -> list[tuple[str, float, float, tuple[Delivery, int]]]:
        """:meth:`entries`, each with the delivery as :meth:`summaries` reads it."""

    def counts(self, tenant: str | None) -> dict[str, int]:
        """Archived deliveries by status."""

    def by_event(self, event_id: str, tenant: str | None, limit: int) -> list[tuple[str, float]]:
        """The archived deliveries of an event: (id, creation time)."""

    def exhausted(self, endpoint_id: str, since: datetime, until: datetime) -> list[str]:
        """The ids of the endpoint's archived ``retries_exhausted`` deliveries created in
        the window."""

    def remove(self, delivery_id: str, created_at: datetime) -> None:
        """Delete one archived delivery (it is back in Redis)."""

    def erase_tenant(self, tenant_id: str) -> int:
        """Delete every archived delivery of the tenant, for good; returns how many."""


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
    "test",
    "ordering_key",
    "waiting_behind",
)
_OPTIONAL = (
    "next_attempt_at",
    "tenant_id",
    "endpoint_id",
    "stop_reason",
    "queue",
    "ordering_key",
    "waiting_behind",
)


def _scopes(keys: Keys, tenant_id: str | None) -> list[Callable[..., str]]:
    return [keys.deliveries] + ([partial(keys.tenant_deliveries, tenant_id)] if tenant_id else [])


def _every_index(keys: Keys, tenant_id: str | None) -> list[str]:
    """Every index key a delivery of this tenant (or of none) can be in."""
    into, out_of, _ = _indexes(keys, DeliveryStatus.PENDING, tenant_id)
    return _created_indexes(keys, tenant_id) + into + out_of


def _created_indexes(keys: Keys, tenant_id: str | None) -> list[str]:
    """The indexes of every delivery by creation time (all, and the tenant's): entered
    once, never moved, so that a log read page by page stays in place."""
    return [scope(None) for scope in _scopes(keys, tenant_id)]


def _indexes(
    keys: Keys, status: DeliveryStatus, tenant_id: str | None
) -> tuple[list[str], list[str], list[str]]:
    """The status index keys a delivery in ``status`` is in, those it is not in, and the
    status of each of the latter (the scripts leave only those of the status it had)."""
    scopes = _scopes(keys, tenant_id)
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


def _order(member: str, score: float) -> tuple[float, bytes]:
    """Where an index entry sorts in a listing (descending): by score, then by id's
    bytes, as ZRANGE REV orders ties and as the archive's C collation does."""
    return score, member.encode()


def _hash_value(value: object) -> str:
    if isinstance(value, datetime):
        return isoformat(value)
    return "" if value is None else str(value)


class DeliveryStore:
    """Owns every delivery's record: fields and body, attempts, status indexes, the
    overdue index, and the claim and record steps of each attempt."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        settings: Settings,
        archive: ArchiveTier | None = None,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._settings = settings
        self.archive = archive
        self.retention = timedelta(seconds=settings.retention_seconds)
        # The archiver's list of finished deliveries ('' for none), and the span of
        # the idempotency markers' hashes: a quarter of their window, so that a
        # create looks in five at most.
        self._archivable = keys.archivable() if archive is not None else ""
        self._window = settings.idempotency_hours * 3600
        self._bucket = max(60.0, self._window / 4)
        self._abandon_script = Script(client, "abandon_attempt")
        self._create_script = Script(client, "create_deliveries")
        self._status_script = Script(client, "set_status")
        self._take_script = Script(client, "take_archivable")
        self._forget_script = Script(client, "forget_archived")
        self._restore_script = Script(client, "restore_delivery")
        self._unchain_script = Script(client, "unchain")
        # What the claim and the record take that is the same for every attempt: part
        # of the scripts' source (see scripts), not sent with each call.
        claim_constants = {
            "running_key": keys.running(),
            "endpoint_template": template(keys.endpoint),
            **enter_args(settings, keys),
        }
        self._claim_script = Script(client, "claim_attempt", claim_constants)
        self._record_script = Script(
            client,
            "record_attempt",
            {
                "running_key": keys.running(),
                "scheduled_key": keys.scheduled(),
                "due_key": keys.due(),
                **metric_keys(settings, keys),
                "archive_key": self._archivable,
                "endpoint_template": claim_constants["endpoint_template"],
                "hold": claim_constants["hold"],
                "ttl": int(self.retention.total_seconds()),
                "event_template": self._event_template(),
                **self._chain_args(),
                **leave_constants(settings, keys),
            },
        )

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
        nothing written, and the new ones that wait behind an earlier delivery of
        their ordering key, which get no run (its predecessor wakes them). Raises
        :class:`~webhooks.errors.DeliveryConflict`, writing nothing, if one of those
        was stored with another body. ``trace``: the producer's trace context (JSON),
        kept for the runs published later.

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
            if delivery.ordering_key is not None and delivery.endpoint_id:
                chain = self._keys.ordering_chain(delivery.endpoint_id, delivery.ordering_key)
                fields += ["ordering_chain", chain]
            if trace:
                fields += ["trace", trace]
            for name in _FIELDS:
                value = getattr(delivery, name)
                if isinstance(value, datetime):
                    value = stamps.get(value) or stamps.setdefault(value, isoformat(value))
                elif isinstance(value, bool):  # only a test has the field: "1"
                    value = "1" if value else None
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
        into, out_of, _ = _indexes(self._keys, status, tenant_id)
        into = _created_indexes(self._keys, tenant_id) + into
        moment = time.time()
        reply = self._create_script(
            keys={
                "due_key": self._keys.due(),
                "scheduled_key": self._keys.scheduled(),
                "queue_key": queue_key,
                "tenant_key": self._keys.tenant(tenant_id) if tenant_id else "",
                "metrics_key": metric_keys(self._settings, self._keys)["metrics_key"],
                "index_keys": [*into, *out_of],
            },
            args={
                "cutoff": cutoff,
                "ttl": int(self.retention.total_seconds()),
                "delivery_template": template(self._keys.delivery),
                "endpoint_template": template(self._keys.endpoint_deliveries),
                "event_template": self._event_template(),
                **self._marker_buckets(moment),
                "now": moment,
                "window": self._window,
                "index_count": len(into),
                "body_count": len(numbered),
                "attempts_template": template(self._keys.attempts),
                # Admission wherever the first runs go out now. On RabbitMQ a woken run
                # has no kept message: the worker whose attempt freed its slot takes it
                # (the handoff), else the promoter publishes it.
                **admission_args(self._settings, self._keys, park_at is None),
                "rest": [*numbered, *items],
            },
        )
        if reply[0] == b"conflict":
            raise DeliveryConflict(reply[1].decode())
        if reply[0] == b"no_tenant":
            raise TenantNotFound(str(tenant_id))
        return {member.decode() for member in reply[1:] if member != b"waiting"}

    def create(self, delivery: Delivery, body: bytes) -> set[str]:
        return self.create_many([delivery], body)

    def _chain_args(self) -> dict[str, str]:
        """What the scripts that take a delivery out of its ordering chain read the
        neighbours' keys with (chain.lua)."""
        return {
            "delivery_template": template(self._keys.delivery),
            "attempts_template": template(self._keys.attempts),
        }

    def _unchain(
        self, client: redis.Redis | redis.client.Pipeline, delivery_id: str, chain: str = ""
    ) -> None:
        """Take the delivery out of its ordering chain, waking the next if it was the
        head; nothing for one in none. ``chain``: its chain's key, once its record is gone."""
        self._unchain_script(
            keys={
                "delivery_key": self._keys.delivery(delivery_id),
                "scheduled_key": self._keys.scheduled(),
                "due_key": self._keys.due(),
            },
            args={
                "delivery_id": delivery_id,
                "now": time.time(),
                **self._chain_args(),
                "chain_key": chain,
            },
            client=client,
        )

    def _event_template(self) -> str:
        return template(self._keys.event_digest_deliveries)

    def _marker_buckets(self, moment: float) -> dict[str, str | int]:
        """Where the create script looks for idempotency markers: the buckets that can
        hold one made within the window (none without an archive)."""
        if self.archive is None:
            return {"idempotency_template": "", "first_bucket": "", "last_bucket": ""}
        return {
            "idempotency_template": template(self._keys.idempotency),
            "first_bucket": math.floor((moment - self._window) / self._bucket),
            "last_bucket": math.floor(moment / self._bucket),
        }

    def add_attempts(self, attempts: Mapping[str, Attempt]) -> None:
        """Append an attempt to each delivery's list, in one round trip (bulk seeding)."""
        with self._redis.pipeline(transaction=False) as pipe:
            for delivery_id, attempt in attempts.items():
                pipe.rpush(self._keys.attempts(delivery_id), attempt.model_dump_json())
            pipe.execute()

    def delete_many(self, delivery_ids: Sequence[str]) -> None:
        """Forget deliveries: their records, attempts, every index entry and their next
        run in the schedule. A message still queued for one is dropped at its claim."""
        with self._redis.pipeline(transaction=False) as pipe:
            for delivery_id in delivery_ids:
                pipe.hmget(
                    self._keys.delivery(delivery_id),
                    "tenant_id",
                    "endpoint_id",
                    "cycle",
                    "cycle_offset",
                    "event_id",
                    "ordering_chain",
                    "destination",
                )
                pipe.llen(self._keys.attempts(delivery_id))
            replies = pipe.execute()
        with self._redis.pipeline(transaction=True) as pipe:
            for delivery_id, (
                tenant_id,
                endpoint_id,
                cycle,
                offset,
                event_id,
                _,
                dest,
            ), made in zip(delivery_ids, replies[::2], replies[1::2], strict=True):
                tenant = tenant_id.decode() if tenant_id else None
                pipe.delete(self._keys.delivery(delivery_id), self._keys.attempts(delivery_id))
                pipe.zrem(self._keys.due(), delivery_id)
                pipe.zrem(self._keys.archivable(), delivery_id)
                pipe.zrem(self._keys.archiving(), delivery_id)
                if event_id:
                    pipe.srem(self._keys.event_deliveries(event_id.decode()), delivery_id)
                for key in _every_index(self._keys, tenant):
                    pipe.zrem(key, delivery_id)
                if endpoint_id:
                    pipe.zrem(self._keys.endpoint_deliveries(endpoint_id.decode()), delivery_id)
                run = Run(delivery_id, int(cycle or 0), int(made) - int(offset or 0))
                for key in (self._keys.scheduled(), self._keys.promoting()):
                    pipe.zrem(key, run.member)
                if dest:  # its place among the runs out, or in the queue, goes with it
                    for key in (
                        self._keys.destination_admitted(dest.decode()),
                        self._keys.destination_waiting(dest.decode()),
                    ):
                        pipe.zrem(key, run.member)
                    admit = self._keys.destination_admit(dest.decode())
                    pipe.hdel(admit, run.member, f"q:{run.member}")
            # After every record is gone: the next of an ordering key must not wait for
            # a deleted one forever, and one deleted with it is passed over, not woken.
            for delivery_id, fields in zip(delivery_ids, replies[::2], strict=True):
                if chain := fields[5]:
                    self._unchain(pipe, delivery_id, chain.decode())
            pipe.execute()

    def forget_tenant(self, tenant_id: str) -> int:
        """Forget every delivery of a tenant and its indexes; returns how many."""
        index, forgotten = self._keys.tenant_deliveries(tenant_id), 0
        while batch := zrange_ids(self._redis, index, 0, FORGET_BATCH - 1):
            self.delete_many(batch)
            forgotten += len(batch)
        self._redis.delete(
            *(self._keys.tenant_deliveries(tenant_id, status) for status in (None, *DeliveryStatus))
        )
        forget_tenant_activity(self._redis, self._keys, tenant_id)
        if self.archive is not None:
            # After Redis: what an archiver took from Redis before is kept out of the
            # archive by the erasure, whenever it commits.
            forgotten += self.archive.erase_tenant(tenant_id)
        return forgotten

    def delete(self, delivery_id: str) -> None:
        self.delete_many([delivery_id])

    def claim_attempt(self, run: Run, lease: float) -> Claim:
        """Claim the attempt ``run`` makes, with what it needs to send, in one step: the
        delivery's fields, its endpoint, and a place at its destination (see destinations)."""
        return _claim(fields(self._claim_script(*self._claim_call(run, lease))), run)

    def _claim_call(self, run: Run, lease: float) -> tuple[dict[str, str], dict[str, Any]]:
        now_ = time.time()
        keys = {
            "delivery_key": self._keys.delivery(run.delivery_id),
            "attempts_key": self._keys.attempts(run.delivery_id),
        }
        args = {
            "cycle": run.cycle,
            "retries": run.retries,
            "now": now_,
            "lease_until": lease_end(now_, lease, self._settings.claim_keep_seconds),
            "member": run.member,
        }
        return keys, args

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
        strain: Strain | None = None,
        handoff: tuple[str, str] | None = None,
        then_claim: NextRun | None = None,
        claim_handed: float | None = None,
    ) -> Recorded:
        """Append an attempt, move the delivery to the status it led to and release the
        attempt's claim, atomically (one Lua call); with ``park``, also schedule the next
        run in Redis; with ``destination``, also leave it, moving its circuit breaker and
        its pace (``strain``: what the attempt says of its load).

        With ``handoff`` (the caller's queue, and the queue of a delivery that names
        none), the run waiting at the destination that the freed slot goes to is
        returned, when its delivery is routed to the caller's queue, for the caller
        to take (:meth:`~.schedule.Schedule.take_handed`) and run next (None: none).
        It is scheduled a moment later meanwhile, so that a lost reply loses nothing.

        With ``then_claim``, the run the caller makes next is claimed in the same round
        trip, after the record (:meth:`claim_attempt`; a handed one taken out of the
        schedule first); its claim is returned, or None when it was not made (the record
        had to be tried again: the run is claimed apart, as usual). With
        ``claim_handed`` (a lease, in seconds) and ``handoff``, the handed run is claimed
        in the same call, out of the schedule, and its claim returned: should the reply
        be lost, the lease lapses and the promoter runs it.

        The attempt was made, so losing its record would mean making it again:
        while Redis cannot be reached, the write is tried again for up to
        ``persist_for`` seconds (it is safe to repeat).
        """
        moment = now()
        keep = self._settings.claim_keep_seconds
        waiting = status not in FINAL_STATUSES and next_attempt_at is not None
        into, out_of, leaving = _indexes(self._keys, status, tenant_id)
        keys = {
            "delivery_key": self._keys.delivery(run.delivery_id),
            "attempts_key": self._keys.attempts(run.delivery_id),
            **activity_keys(self._keys, tenant_id, moment),
            "index_keys": [*into, *out_of],
        }
        args = {
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
            "index_count": len(into),
            **attempt_args(attempt),
            **activity_args(run, attempt, status),
            "index_statuses": leaving,
            **leave_args(destination, attempt.succeeded, attempt.duration_ms, strain),
            "handoff": handoff[0] if handoff else "",
            "default_queue": handoff[1] if handoff else "",
            # (A time made here, as then_lease_until: see _then_args.)
            "claim_lease_until": lease_end(moment.timestamp(), claim_handed, keep)
            if handoff and claim_handed is not None
            else "",
            **_then_args(then_claim, moment.timestamp(), keep),
        }
        try:
            reply = self._record_script(keys, args)
        except Exception as error:
            # What happened of it is unknown: tried again alone (the next run's claim,
            # if it was made, holds that run until its lease lapses, as any lost claim).
            if not unavailable(error):
                raise
            alone = {**args, **_NO_THEN}
            reply = persist(
                lambda: self._record_script(keys, alone),
                persist_for,
                f"recording attempt {attempt.number} of {run.delivery_id}",
            )
        named = fields(reply)
        handed = Run.parse(named["handed"]) if "handed" in named else None
        handed_claim = None
        if handed is not None and "claim" in named:
            handed_claim = _claim(fields(named["claim"]), handed)
        claim = None
        if then_claim is not None and "then" in named:
            claim = _claim(fields(named["then"]), then_claim.run)
        return Recorded(handed, claim, handed_claim)

    def renew_claims(self, held: Sequence[tuple[Run, str | None]], lease: float) -> None:
        """Extend the claims of attempts in flight, and their destination slots, by
        ``lease`` seconds from now; a claim that is gone (recorded, or lapsed and taken)
        stays gone."""
        until = lease_end(time.time(), lease, self._settings.claim_keep_seconds)
        with self._redis.pipeline(transaction=False) as pipe:
            for run, dest in held:
                pipe.zadd(self._keys.running(), {run.member: until}, xx=True)
                if dest:
                    pipe.zadd(self._keys.destination_inflight(dest), {run.member: until}, xx=True)
            pipe.execute()

    def abandon_attempt(self, run: Run) -> bool:
        """Release a claimed attempt its worker stopped, and its destination slot; the run
        is due again now. False if it was no longer held."""
        return bool(
            self._abandon_script(
                keys={
                    "delivery_key": self._keys.delivery(run.delivery_id),
                    "running_key": self._keys.running(),
                    "scheduled_key": self._keys.scheduled(),
                },
                args={
                    "member": run.member,
                    "now": time.time(),
                    "inflight_template": template(self._keys.destination_inflight),
                    "waiting_template": template(self._keys.destination_waiting),
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
        into, out_of, leaving = _indexes(self._keys, status, tenant_id)
        waiting = status not in FINAL_STATUSES and next_attempt_at is not None
        self._status_script(
            keys={
                "delivery_key": self._keys.delivery(delivery_id),
                "attempts_key": self._keys.attempts(delivery_id),
                "due_key": self._keys.due(),
                "running_key": self._keys.running(),
                "metrics_key": metric_keys(self._settings, self._keys)["metrics_key"],
                "archive_key": self._archivable,
                **activity_keys(self._keys, tenant_id, moment),
                "scheduled_key": self._keys.scheduled(),
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
                "event_template": self._event_template(),
                **activity_args(None, None, status),
                **self._chain_args(),
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
                pipe.hmget(self._keys.delivery(delivery_id), "status", "tenant_id")
            replies = pipe.execute()
        return [
            (
                DeliveryStatus(status.decode()) if status else None,
                tenant.decode() if tenant else None,
            )
            for status, tenant in replies
        ]

    def skip(self, delivery_id: str, tenant: str | None = None) -> Delivery:
        """Mark an unfinished delivery ``retries_exhausted`` (an operator gave up on it),
        which wakes the next of its ordering key when it is the head; returns it as it
        is now. A finished one is refused: :class:`~webhooks.errors.DeliveryFinished`
        (an :class:`~webhooks.InvalidInput` naming ``id``)."""
        delivery = self.get(delivery_id, tenant)
        if delivery.status in FINAL_STATUSES:
            raise DeliveryFinished(delivery_id, delivery.status.value)
        self.set_status(
            delivery_id, DeliveryStatus.RETRIES_EXHAUSTED, stop_reason="skipped by an operator"
        )
        return self.get(delivery_id, tenant)

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
        """Begin a new attempt cycle (redeliver): numbering goes on after the last attempt.
        An archived delivery comes back to Redis first, with its attempts."""
        key = self._keys.delivery(checked_delivery_id(delivery_id))
        if self.archive is not None and not self._redis.exists(key):
            self._bring_back(delivery_id)

        def start(pipe: redis.client.Pipeline) -> int:
            cycle, tenant_id = cast(list[bytes | None], pipe.hmget(key, "cycle", "tenant_id"))
            if not pipe.exists(key):
                raise DeliveryNotFound(delivery_id)
            made = pipe.llen(self._keys.attempts(delivery_id))
            pipe.multi()
            # A new cycle is an attempt now: it takes no place in its key's order.
            self._unchain(pipe, delivery_id)
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
                pipe.hmget(self._keys.delivery(delivery_id), "queue", "trace")
            return [
                (queue.decode() if queue else None, trace.decode() if trace else "")
                for queue, trace in pipe.execute()
            ]

    def statuses(self, delivery_ids: Sequence[str]) -> list[DeliveryStatus | None]:
        """Each delivery's status; None for one that does not exist."""
        return [status for status, _ in self._owners(delivery_ids)]

    def load(self, delivery_id: str, tenant: str | None = None) -> tuple[Delivery, bytes]:
        """The delivery with all its attempts, and the body it sends. With ``tenant``,
        another tenant's delivery is not found, exactly as a missing one is (as is an id
        that is not a delivery id)."""
        checked_delivery_id(delivery_id)
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._keys.delivery(delivery_id))
            pipe.lrange(self._keys.attempts(delivery_id), 0, -1)
            fields, attempts = pipe.execute()
        if not fields and self.archive is not None:
            if (archived := self.archive.load(delivery_id, tenant)) is not None:
                return archived
            raise DeliveryNotFound(delivery_id)
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
        listed = self._page(status, limit, tenant, endpoint_id, None)
        return self.full(listed.ids, listed.created, listed.archived_only)

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

        With an archive, both tiers are read in the same order and merged: Redis
        first, so that a delivery archived between the two reads is found in the
        second. A position is the same in either tier, so a page goes on where the
        last ended wherever its deliveries are now.
        """
        listed = self._page(status, limit, tenant, endpoint_id, after)
        return listed.ids, listed.position

    def listing(
        self,
        status: DeliveryStatus | None = None,
        limit: int = 50,
        *,
        tenant: str | None = None,
        endpoint_id: str | None = None,
        after: Position | None = None,
    ) -> tuple[list[tuple[Delivery, int]], Position | None]:
        """:meth:`page`, read as :meth:`summaries` reads ids (what a page of the log
        shows), and where the next page starts."""
        listed = self._page(status, limit, tenant, endpoint_id, after, summarize=True)
        # What only the archive listed was read with its listing (not in Redis when
        # Redis's page was read); the rest as summaries reads ids, Redis first.
        found = {i: listed.summaries[i] for i in listed.ids if i in listed.archived_only}
        rest = [i for i in listed.ids if i not in found]
        found |= {
            delivery.id: (delivery, n) for delivery, n in self.summaries(rest, listed.created)
        }
        return [found[i] for i in listed.ids if i in found], listed.position

    def _page(
        self,
        status: DeliveryStatus | None,
        limit: int,
        tenant: str | None,
        endpoint_id: str | None,
        after: Position | None,
        summarize: bool = False,
    ) -> _Listed:
        """:meth:`page`, with what each tier listed; ``summarize``: with the archive's
        rows read as summaries in the same statement as its listing."""
        if tenant is not None:
            checked_tenant_id(tenant)
        if endpoint_id is not None:
            checked_endpoint_id(endpoint_id)
        entries, end = self._redis_page(status, limit, tenant, endpoint_id, after)
        if self.archive is None:
            return _Listed([member for member, _ in entries], end, {}, frozenset(), {})
        read: dict[str, tuple[Delivery, int]] = {}
        if summarize:
            rows = self.archive.listing(status, tenant, endpoint_id, after, limit + 1)
            archived = [(member, score, moment) for member, score, moment, _ in rows]
            read = {member: summary for member, _, _, summary in rows}
        else:
            archived = self.archive.entries(status, tenant, endpoint_id, after, limit + 1)
        created = {member: moment for member, _, moment in archived}
        # Past the last entry a tier returned while it had more, it is unknown what
        # that tier holds: the merged page stops at the earlier of the two such ends.
        ends = [_order(end[1], end[0])] if end is not None else []
        if len(archived) > limit:
            ends.append(_order(*archived[-1][:2]))
        cut = max(ends) if ends else None
        seen: set[str] = set()
        merged: list[tuple[str, float]] = []
        candidates = entries + [(member, score) for member, score, _ in archived]
        for member, score in sorted(candidates, key=lambda e: _order(*e), reverse=True):
            if member not in seen and (cut is None or _order(member, score) >= cut):
                seen.add(member)
                merged.append((member, score))
        found = merged[:limit]
        ids = [member for member, _ in found]
        archived_only = frozenset(created) - {member for member, _ in entries}
        if len(merged) <= limit and cut is None:
            return _Listed(ids, None, created, archived_only, read)
        if found:
            return _Listed(ids, (found[-1][1], found[-1][0]), created, archived_only, read)
        assert cut is not None
        return _Listed(ids, (cut[0], cut[1].decode()), created, archived_only, read)

    def _redis_page(
        self,
        status: DeliveryStatus | None,
        limit: int,
        tenant: str | None,
        endpoint_id: str | None,
        after: Position | None,
    ) -> tuple[list[tuple[str, float]], Position | None]:
        """:meth:`page` of Redis alone, as (id, score) entries."""
        if endpoint_id is None:
            index = (
                self._keys.tenant_deliveries(tenant, status)
                if tenant is not None
                else self._keys.deliveries(status)
            )
            wanted = None
        else:
            index, wanted = self._keys.endpoint_deliveries(endpoint_id), status
        found: list[tuple[str, float]] = []
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
                    found.append((member, score))
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

    def summaries(
        self,
        ids: Sequence[str],
        created: Mapping[str, float] | None = None,
        archived_only: Collection[str] = (),
    ) -> list[tuple[Delivery, int]]:
        """Each delivery with only its last attempt, and how many attempts it has;
        deliveries that are gone are left out. Those no longer in Redis are read from
        the archive (``created``: their creation times, when known), so that one
        archived since its id was listed is still shown.

        ``archived_only``: ids a page found in the archive and not in Redis, read from
        the archive without asking Redis first (that question was a third of a page's
        time at 10 million archived deliveries). One the archive no longer holds was
        redelivered since: a redeliver writes it back to Redis before it deletes the
        archive's row, so Redis is asked for it then."""
        found = self._redis_summaries([i for i in ids if i not in archived_only])
        if self.archive is not None and (missing := [i for i in ids if i not in found]):
            found |= self.archive.summaries(missing, created)
            back = [i for i in missing if i in archived_only and i not in found]
            found |= self._redis_summaries(back)
        return [found[delivery_id] for delivery_id in ids if delivery_id in found]

    def _redis_summaries(self, ids: Sequence[str]) -> dict[str, tuple[Delivery, int]]:
        if not ids:
            return {}
        with self._redis.pipeline(transaction=False) as pipe:
            for delivery_id in ids:
                pipe.hmget(self._keys.delivery(delivery_id), _FIELDS)
                pipe.lrange(self._keys.attempts(delivery_id), -1, -1)
                pipe.llen(self._keys.attempts(delivery_id))
            replies = pipe.execute()
        found: dict[str, tuple[Delivery, int]] = {}
        for delivery_id, values, last, count in zip(
            ids, replies[::3], replies[1::3], replies[2::3], strict=True
        ):
            if values[0] is not None:
                fields = {name.encode(): value for name, value in zip(_FIELDS, values, strict=True)}
                found[delivery_id] = (_delivery(fields, last), int(count))
        return found

    def full(
        self,
        ids: Sequence[str],
        created: Mapping[str, float] | None = None,
        archived_only: Collection[str] = (),
    ) -> list[Delivery]:
        """The deliveries among ``ids``, in that order, with every attempt (those that
        are gone are left out); ``created`` and ``archived_only`` as for
        :meth:`summaries`."""
        found = self._redis_full([i for i in ids if i not in archived_only])
        if self.archive is not None and (missing := [i for i in ids if i not in found]):
            found |= self.archive.read(missing, created)
            found |= self._redis_full([i for i in missing if i in archived_only and i not in found])
        return [found[delivery_id] for delivery_id in ids if delivery_id in found]

    def _redis_full(self, ids: Sequence[str]) -> dict[str, Delivery]:
        if not ids:
            return {}
        with self._redis.pipeline(transaction=False) as pipe:
            for delivery_id in ids:
                pipe.hmget(self._keys.delivery(delivery_id), _FIELDS)
                pipe.lrange(self._keys.attempts(delivery_id), 0, -1)
            replies = pipe.execute()
        found: dict[str, Delivery] = {}
        for delivery_id, values, attempts in zip(ids, replies[::2], replies[1::2], strict=True):
            if values[0] is not None:  # expired, or archived, between the two reads
                fields = {name.encode(): value for name, value in zip(_FIELDS, values, strict=True)}
                found[delivery_id] = _delivery(fields, attempts)
        return found

    def by_event(self, event_id: str, tenant: str | None = None) -> list[tuple[Delivery, int]]:
        """The deliveries of one event (one per destination), newest first, as
        :meth:`summaries` gives them; with ``tenant``, only that tenant's."""
        ids = sorted(
            member.decode()
            for member in cast(
                set[bytes], self._redis.smembers(self._keys.event_deliveries(event_id))
            )
        )[:EVENT_LIMIT]
        created: dict[str, float] = {}
        archived_only: set[str] = set()
        if self.archive is not None:
            known = set(ids)
            created = dict(self.archive.by_event(event_id, tenant, EVENT_LIMIT))
            archived_only = {delivery_id for delivery_id in created if delivery_id not in known}
            ids += [delivery_id for delivery_id in created if delivery_id in archived_only]
        found = [
            (delivery, count)
            for delivery, count in self.summaries(ids, created, archived_only)
            if delivery.event_id == event_id and (tenant is None or delivery.tenant_id == tenant)
        ]
        found.sort(
            key=lambda item: _order(item[0].id, item[0].created_at.timestamp()), reverse=True
        )
        return found

    def exhausted(self, endpoint_id: str, since: datetime, until: datetime) -> list[str]:
        """The endpoint's ``retries_exhausted`` deliveries created in the window, in
        Redis or in the archive (what ``recover`` redelivers), oldest first."""
        ids = zrange_ids(
            self._redis,
            self._keys.endpoint_deliveries(checked_endpoint_id(endpoint_id)),
            since.timestamp(),
            until.timestamp(),
            byscore=True,
        )
        found = [
            delivery_id
            for delivery_id, status in zip(ids, self.statuses(ids), strict=True)
            if status is DeliveryStatus.RETRIES_EXHAUSTED
        ]
        if self.archive is not None:
            known = set(ids)
            found += [
                i for i in self.archive.exhausted(endpoint_id, since, until) if i not in known
            ]
        return found

    def stats(self, overdue_after: float, tenant: str | None = None) -> dict[str, int]:
        """Deliveries by status, how many unfinished ones are past due by
        ``overdue_after``, and (for all tenants) how many retries are parked."""
        cutoff = now().timestamp() - overdue_after
        stats = (
            self._tenant_stats(tenant, cutoff) if tenant is not None else self._all_stats(cutoff)
        )
        if self.archive is not None:
            for status, count in self.archive.counts(tenant).items():
                stats[status] += count
        return stats

    def _all_stats(self, cutoff: float) -> dict[str, int]:
        with self._redis.pipeline(transaction=False) as pipe:
            for status in DeliveryStatus:
                pipe.zcard(self._keys.deliveries(status))
            pipe.zcount(self._keys.due(), "-inf", cutoff)
            pipe.zcard(self._keys.scheduled())
            *counts, overdue, parked = pipe.execute()
        stats = {
            status.value: int(count) for status, count in zip(DeliveryStatus, counts, strict=True)
        }
        return {**stats, "overdue": int(overdue), "parked": int(parked)}

    def _tenant_stats(self, tenant: str, cutoff: float) -> dict[str, int]:
        checked_tenant_id(tenant)
        with self._redis.pipeline(transaction=False) as pipe:
            for status in DeliveryStatus:
                pipe.zcard(self._keys.tenant_deliveries(tenant, status))
            counts = pipe.execute()
        stats = {
            status.value: int(count) for status, count in zip(DeliveryStatus, counts, strict=True)
        }
        # Overdue: the tenant's unfinished deliveries, looked up in the due index.
        overdue = 0
        for status in (DeliveryStatus.PENDING, DeliveryStatus.RETRYING):
            ids = zrange_ids(self._redis, self._keys.tenant_deliveries(tenant, status), 0, -1)
            for first in range(0, len(ids), 1000):
                scores = self._redis.zmscore(self._keys.due(), ids[first : first + 1000])
                overdue += sum(1 for score in scores if score is not None and score <= cutoff)
        return {**stats, "overdue": overdue}

    def push_due(self, delivery_id: str, due: float) -> None:
        """Move a delivery's due time in the overdue index only (the backstop's mark)."""
        self._redis.zadd(self._keys.due(), {delivery_id: due}, xx=True)

    def overdue(self, older_than: float, limit: int) -> list[str]:
        """Unfinished deliveries whose next attempt was due before ``older_than``."""
        return zrange_ids(
            self._redis, self._keys.due(), "-inf", older_than, byscore=True, limit=limit
        )

    # --- The archive's side in Redis -------------------------------------------------

    def _bring_back(self, delivery_id: str) -> None:
        """Restore an archived delivery into Redis, then remove it from the archive (a
        reader sees it in both for that moment, and merges it as one)."""
        assert self.archive is not None
        found = self.archive.load(delivery_id, None)
        if found is None:
            raise DeliveryNotFound(delivery_id)
        delivery, body = found
        self.restore(delivery, body)
        self.archive.remove(delivery.id, delivery.created_at)

    def restore(self, delivery: Delivery, body: bytes) -> bool:
        """Write a finished delivery read from the archive back into Redis as it was,
        with its attempts and index entries; False if its record is there already."""
        fields: list[str | bytes] = [
            "body",
            body,
            "destination",
            destination(delivery.url, delivery.endpoint_id),
        ]
        for name in _FIELDS:
            value = getattr(delivery, name)
            if isinstance(value, bool):  # as created: only a test has the field, "1"
                value = "1" if value else None
            if value is not None:
                fields += [name, _hash_value(value)]
        created = _created_indexes(self._keys, delivery.tenant_id)
        into, _, _ = _indexes(self._keys, delivery.status, delivery.tenant_id)
        return bool(
            self._restore_script(
                keys={
                    "delivery_key": self._keys.delivery(delivery.id),
                    "attempts_key": self._keys.attempts(delivery.id),
                    "archivable_key": self._keys.archivable(),
                    "endpoint_key": (
                        self._keys.endpoint_deliveries(delivery.endpoint_id)
                        if delivery.endpoint_id
                        else ""
                    ),
                    "event_key": self._keys.event_deliveries(delivery.event_id),
                    "index_keys": [*created, *into],
                },
                args={
                    "created_score": delivery.created_at.timestamp(),
                    "updated_score": delivery.updated_at.timestamp(),
                    "now": time.time(),
                    "ttl": int(self.retention.total_seconds()),
                    "created_count": len(created),
                    "field_count": len(fields) // 2,
                    "rest": [
                        *fields,
                        *(attempt.model_dump_json() for attempt in delivery.attempts),
                    ],
                },
            )
        )

    def take_archivable(self, limit: int, after_seconds: float, lease: float) -> list[Archived]:
        """Take up to ``limit`` finished deliveries whose final attempt is at least
        ``after_seconds`` old (or whose earlier taker's claim lapsed), held for this
        caller for ``lease`` seconds, with their records. One that is no longer
        finished (redelivered) or gone is let go of at once and not returned. One
        script call per :data:`ARCHIVE_SLICE`, so that Redis is never held for long."""
        taken: list[Archived] = []
        left = limit
        while left > 0:
            moment = time.time()
            count, *reply = self._take_script(
                keys={
                    "archivable_key": self._keys.archivable(),
                    "archiving_key": self._keys.archiving(),
                },
                args={
                    "now": moment,
                    "due_before": moment - after_seconds,
                    "lease_until": moment + lease,
                    "limit": min(left, ARCHIVE_SLICE),
                    "delivery_template": template(self._keys.delivery),
                    "attempts_template": template(self._keys.attempts),
                },
            )
            taken += [
                Archived(delivery_id.decode(), fields(record), attempts)
                for delivery_id, record, attempts in zip(
                    reply[::3], reply[1::3], reply[2::3], strict=True
                )
            ]
            if count < min(left, ARCHIVE_SLICE):
                break  # nothing more is due
            left -= count
        return taken

    def forget_archived(self, archived: Sequence[Archived]) -> int:
        """Forget deliveries the archive holds now (record, attempts, index entries),
        each leaving its idempotency marker; one that changed since it was taken is
        only let go of. Returns how many were forgotten. One script call per
        :data:`ARCHIVE_SLICE`, so that Redis is never held for long."""
        forgotten = 0
        for first in range(0, len(archived), ARCHIVE_SLICE):
            forgotten += self._forget(archived[first : first + ARCHIVE_SLICE])
        return forgotten

    def _forget(self, archived: Sequence[Archived]) -> int:
        rest: list[str | int] = []
        for item in archived:
            body = item.fields.get("body", b"")
            rest += [
                item.id,
                item.fields["updated_at"].decode(),
                int(item.created.timestamp()),
                hashlib.sha1(body, usedforsecurity=False).hexdigest()[:16],
            ]
        return int(
            self._forget_script(
                keys={
                    "archiving_key": self._keys.archiving(),
                    "archivable_key": self._keys.archivable(),
                    "all_key": self._keys.deliveries(),
                },
                args={
                    "delivery_template": template(self._keys.delivery),
                    "attempts_template": template(self._keys.attempts),
                    "tenant_template": template(self._keys.tenant_deliveries),
                    "endpoint_template": template(self._keys.endpoint_deliveries),
                    "event_template": self._event_template(),
                    "idempotency_template": template(self._keys.idempotency),
                    "bucket_seconds": self._bucket,
                    "window": self._window,
                    "waiting_template": template(self._keys.destination_waiting),
                    "rest": rest,
                },
            )
        )

    def archive_backlog(self) -> int:
        """Finished deliveries still in Redis waiting for the archive (taken or not)."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self._keys.archivable())
            pipe.zcard(self._keys.archiving())
            waiting, taken = pipe.execute()
        return int(waiting) + int(taken)
