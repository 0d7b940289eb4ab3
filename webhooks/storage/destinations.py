"""Per-destination isolation: a slow or dead receiver must not take all the workers.

A **destination** is the endpoint for endpoint deliveries, and ``host:port`` for
bare-URL ones. Its rules:

- **Concurrency limit.** At most ``WEBHOOKS_DESTINATION_CONCURRENCY`` attempts
  are in flight to one destination across all workers. A run over the limit
  waits in the destination's queue, unattempted and uncounted, and each
  finished attempt there lets the longest-waiting run in: a slow or dead
  receiver holds a few worker slots, and its backlog costs nothing while it waits.
- **Circuit breaker.** ``WEBHOOKS_BREAKER_FAILURES`` consecutive failed attempts
  open the destination's circuit, and so does finding it full when it has let no
  attempt go within ``WEBHOOKS_BREAKER_STALLED_SECONDS`` for that long (a
  blackhole: its attempts hang until their timeout). Its deliveries are then set aside,
  unattempted, for ``WEBHOOKS_BREAKER_COOLDOWN_SECONDS``: the first in the
  schedule, to probe at the reopening, the rest in the destination's queue, where
  they cost nothing until the probe's result wakes them. A 2XX closes the circuit
  and wakes as many as there are free slots; a failure opens it again for twice as
  long (at most :data:`MAX_COOLDOWN`). Parked and deferred runs keep their retry
  accounting: only real attempts count toward the 15.
- **Rate limit.** An endpoint's ``rate_limit`` (attempts a second, set by the
  operator or the customer) spaces its attempts at least ``1/rate_limit`` seconds
  apart across all workers, a GCRA kept in the destination's breaker hash. A run
  due within :data:`PACE_HOLD` is let in and its worker waits for its start; one
  due later reserves the first free start time and is scheduled for it, once, its
  claim released and no attempt counted (it is *paced*). Reservations reach
  :data:`PACE_HORIZON` ahead; a longer backlog waits in the destination's throttled
  queue, at no message each, and each finished attempt there (or newcomer) moves
  the oldest into the reservations as their turn comes within the horizon. Coming back, it holds its
  reservation: later arrivals queue behind it, and a late return (a busy promoter,
  a full queue) starts when the limit next allows, never in a burst.

- **Adaptive pacing** (``WEBHOOKS_ADAPTIVE_PACING``, on by default). Signs of
  strain (a 429 or 503, a Retry-After, a timeout, an attempt :data:`SLOW_FACTOR`
  times slower than the destination's moving average) lower the attempts in flight
  and the rate actually used by :data:`DECREASE`, once per pace, down to one in
  flight and :data:`RATE_FLOOR` a second; a destination with no rate limit gets
  one then, from what got through over the last second. Each success raises them
  by 1/pace, about one a second per second, up to the configured limits, where the
  pace is lifted (as it is once the traffic is under half the pace: it holds
  nothing back). A Retry-After also holds the destination's starts off until then
  (at most :data:`PAUSE_MAX`). The pace is shown with the endpoint
  (:meth:`Gate.pace_of`) and as a metric.

Redis applies these rules atomically in ``lua/destination.lua``: entering
happens inside the attempt's claim and leaving inside its record, so isolation
costs no round trip of its own. This module gives them their parameters and
reads their answers.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import redis

from ..clock import at, isoformat, lease_end
from ..models import Attempt, ErrorKind, Run
from ..settings import Settings
from .connection import zrange_ids
from .keys import Keys, template
from .scripts import Number, Script, fields

__all__ = [
    "ADMISSION_HOLD",
    "DECREASE",
    "MAX_COOLDOWN",
    "MAX_RATE",
    "PACE_HOLD",
    "PACE_HORIZON",
    "RATE_FLOOR",
    "Entry",
    "EntryOutcome",
    "Gate",
    "Pace",
    "Strain",
    "admission_args",
    "destination",
    "entry",
    "leave_args",
    "leave_constants",
]

#: The highest rate limit an endpoint may have, in attempts a second.
MAX_RATE = 10_000

#: The longest an open circuit waits between probes, in seconds.
MAX_COOLDOWN = 900.0

#: The longest a run waits in its worker for its start under a rate limit, in seconds;
#: one due later is scheduled for it instead. About two promoter passes: runs brought
#: back together by one pass then start at their spaced times, not scheduled again.
PACE_HOLD = 0.25
#: How far ahead starts are reserved under a rate limit, in seconds; a backlog beyond
#: waits in the destination's throttled queue, at no message each, and gets its
#: reservations as time moves on: a new pace holds for the backlog within this long.
PACE_HORIZON = 1.0

#: How long a first run let out at its creation holds a place among its destination's
#: runs out at once (admission) while not claimed, in seconds (at most
#: WEBHOOKS_RECOVERY_SECONDS): one lost with its worker's prefetch stops holding it
#: then. Longer than a busy queue's usual wait.
ADMISSION_HOLD = 30.0

#: Adaptive pacing's multiplicative decrease: the pace is halved on strain.
DECREASE = 0.5
#: The slowest adaptive pacing goes, in attempts a second (and one in flight).
RATE_FLOOR = 1.0
#: The longest a Retry-After holds a destination's starts off, in seconds; the
#: delivery's own retry still honours it up to WEBHOOKS_RETRY_AFTER_MAX_SECONDS.
PAUSE_MAX = 60.0
#: An attempt this many times slower than the destination's moving average, and at
#: least SLOW_MARGIN_MS slower, is strain: the receiver is queueing.
SLOW_FACTOR = 3.0
SLOW_MARGIN_MS = 250.0


def destination(url: str, endpoint_id: str | None) -> str:
    """The destination a delivery's attempts count against."""
    if endpoint_id:
        return endpoint_id
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


class EntryOutcome(StrEnum):
    """What entering a destination answered."""

    OK = "ok"
    PROBE = "probe"  # the one attempt that tests an open circuit
    BUSY = "busy"  # at the concurrency limit: wait for a slot
    OPEN = "open"  # the circuit is open: come back at retry_at
    PACED = "paced"  # over the rate limit: come back at retry_at, a reserved start
    THROTTLED = "throttled"  # over the rate limit, far off: wait in the throttled queue


@dataclass(frozen=True)
class Entry:
    """What entering a destination answered."""

    outcome: EntryOutcome
    # OPEN: when to try again; PACED: the start reserved; THROTTLED: about when it starts
    retry_at: float = 0.0
    start_at: float = 0.0  # OK: when the attempt may start, if later than the claim
    average_ms: float = 0.0  # BUSY: the destination's recent attempt time
    ahead: int = 0  # BUSY: runs already waiting for a slot there

    @property
    def allowed(self) -> bool:
        return self.outcome in (EntryOutcome.OK, EntryOutcome.PROBE)


def entry(reply: dict[str, bytes]) -> Entry:
    """The Entry for enter's named fields (``lua/destination.lua``)."""
    outcome = EntryOutcome(reply["outcome"].decode())
    if outcome is EntryOutcome.OPEN:
        # Spread the parked runs over a second past the reopening, not all at once.
        return Entry(outcome, retry_at=float(reply["retry_at"]) + random.uniform(0, 1))
    if outcome in (EntryOutcome.PACED, EntryOutcome.THROTTLED):
        return Entry(outcome, retry_at=float(reply["retry_at"]))
    if outcome is EntryOutcome.BUSY:
        return Entry(outcome, average_ms=float(reply["avg_ms"]), ahead=int(reply["waiting"]))
    return Entry(outcome, start_at=float(reply.get("start_at", 0)))


@dataclass(frozen=True)
class Strain:
    """What an attempt says of its destination's load, for adaptive pacing."""

    pushback: bool = False  # a 429 or 503, a Retry-After, or a timeout
    retry_after: float = 0.0  # seconds the receiver asked for (0: none)
    rate_limit: float | None = None  # the endpoint's: the ceiling pacing climbs back to

    @classmethod
    def of(cls, attempt: Attempt, retry_after: float | None, rate_limit: float | None) -> Strain:
        pushback = (
            attempt.status_code in (429, 503)
            or retry_after is not None
            or attempt.error_kind == ErrorKind.TIMEOUT.value
        )
        return cls(pushback, retry_after or 0.0, rate_limit)


@dataclass(frozen=True)
class Pace:
    """The pace adaptive pacing holds a destination at, below its configured limits."""

    concurrency: int  # attempts in flight
    rate: float | None  # attempts a second; None: no rate (only the concurrency is lowered)
    since: float  # when it was last lowered (Unix seconds)

    def public(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "rate": round(self.rate, 2) if self.rate is not None else None,
            "since": isoformat(at(self.since)),
        }


def enter_args(settings: Settings, keys: Keys) -> dict[str, Any]:
    """The rules' parameters and key templates that entering needs (claim_attempt.lua)."""
    return {
        "limit": settings.destination_concurrency,
        "stalled": Number(settings.stalled_seconds),
        "cooldown": Number(settings.breaker_cooldown_seconds),
        "circuits_key": keys.open_circuits() if settings.metrics else "",
        "inflight_template": template(keys.destination_inflight),
        "breaker_template": template(keys.destination_breaker),
        "waiting_template": template(keys.destination_waiting),
        "paced_template": template(keys.destination_paced),
        "hold": Number(PACE_HOLD),
        "throttled_template": template(keys.destination_throttled),
        "horizon": Number(PACE_HORIZON),
    }


def admission_args(settings: Settings, keys: Keys, first_runs_now: bool) -> dict[str, Any]:
    """What admission at creation needs (create_deliveries.lua); none when
    ``first_runs_now`` is False: runs parked until later (they go out through the
    schedule), or published by the caller to a broker other than the store's Redis."""
    margin = settings.destination_admission_margin
    bound = settings.destination_concurrency + margin if margin is not None else 0
    return {
        "admit_bound": bound if first_runs_now else 0,
        "admit_hold": min(ADMISSION_HOLD, settings.recovery_seconds),
        "limit": settings.destination_concurrency,
        "inflight_template": template(keys.destination_inflight),
        "waiting_template": template(keys.destination_waiting),
        "breaker_template": template(keys.destination_breaker),
    }


def leave_constants(settings: Settings, keys: Keys) -> dict[str, Any]:
    """The part of what leaving a destination needs (record_attempt.lua) that is the
    same for every attempt: built once per store, not once per attempt."""
    return {
        "adaptive": int(settings.adaptive_pacing),
        "paced_index": keys.paced_destinations() if settings.metrics else "",
        "paced_template": template(keys.destination_paced),
        "throttled_template": template(keys.destination_throttled),
        "horizon": Number(PACE_HORIZON),
        "decrease": Number(DECREASE),
        "rate_floor": Number(RATE_FLOOR),
        "rate_ceiling": Number(MAX_RATE),
        "pause_max": Number(PAUSE_MAX),
        "slow_factor": Number(SLOW_FACTOR),
        "slow_margin_ms": Number(SLOW_MARGIN_MS),
        "failures_to_open": Number(settings.breaker_failures),
        "cooldown": Number(settings.breaker_cooldown_seconds),
        "max_cooldown": Number(MAX_COOLDOWN),
        "limit": settings.destination_concurrency,
        "stalled": Number(settings.stalled_seconds),
        "inflight_template": template(keys.destination_inflight),
        "breaker_template": template(keys.destination_breaker),
        "waiting_template": template(keys.destination_waiting),
    }


def leave_args(
    dest: str | None, succeeded: bool, duration_ms: float, strain: Strain | None = None
) -> dict[str, Any]:
    """The rest of what leaving a destination after an attempt needs, adaptive pacing's
    part included (record_attempt.lua): with :func:`leave_constants`, all of it."""
    strain = strain or Strain()
    return {
        "pushback": int(strain.pushback),
        "retry_after": strain.retry_after,
        "rate_limit": strain.rate_limit or 0,
        "destination": dest or "",
        "succeeded": int(succeeded),
        "duration_ms": duration_ms,
    }


class Gate:
    """Owns each destination's in-flight set, waiting queue and breaker outside the
    claim and record scripts: entering on its own, waiting for a slot, deferring."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        self._redis = client
        self._keys = keys
        self._settings = settings
        self._enter = Script(client, "enter_destination")
        self._defer = Script(client, "defer_attempt")
        self._wait = Script(client, "wait_for_slot")
        self._throttle = Script(client, "wait_for_rate")

    def enter(self, dest: str, run: Run, lease: float, rate: float | None = None) -> Entry:
        """Enter ``dest`` on its own; the claim usually does this in the same call.
        ``rate``: its endpoint's rate limit."""
        now = time.time()
        reply = self._enter(
            keys={
                "inflight_key": self._keys.destination_inflight(dest),
                "breaker_key": self._keys.destination_breaker(dest),
                "waiting_key": self._keys.destination_waiting(dest),
                "paced_key": self._keys.destination_paced(dest),
                "throttled_key": self._keys.destination_throttled(dest),
            },
            args={
                "now": now,
                "lease_until": lease_end(now, lease, self._settings.claim_keep_seconds),
                "member": run.member,
                "limit": self._settings.destination_concurrency,
                "stalled": self._settings.stalled_seconds,
                "cooldown": self._settings.breaker_cooldown_seconds,
                "circuits_key": self._keys.open_circuits() if self._settings.metrics else "",
                "destination": dest,
                "rate": rate or 0,
                "hold": PACE_HOLD,
                "horizon": PACE_HORIZON,
            },
        )
        return entry(fields(reply))

    def pace_of(self, dest: str) -> Pace | None:
        """The pace adaptive pacing holds ``dest`` at, or None when it is at its limits."""
        return self.paces_of([dest])[dest]

    def paces_of(self, dests: Sequence[str]) -> dict[str, Pace | None]:
        """:meth:`pace_of` for each of ``dests``, in one round trip."""
        with self._redis.pipeline(transaction=False) as pipe:
            for dest in dests:
                pipe.hmget(self._keys.destination_breaker(dest), *_PACE_FIELDS)
            found = pipe.execute()
        return {
            dest: _pace(fields, self._settings) for dest, fields in zip(dests, found, strict=True)
        }

    def paces(self, limit: int = 1000) -> dict[str, Pace]:
        """The destinations adaptive pacing holds below their limits (with metrics on),
        at most ``limit`` of the most recently lowered, and their pace."""
        index = self._keys.paced_destinations()
        paces = self.paces_of(zrange_ids(self._redis, index, 0, limit - 1, desc=True))
        gone = [name for name, pace in paces.items() if pace is None]
        if gone:  # its breaker expired (a day without attempts): the pace went with it
            self._redis.zrem(index, *gone)
        return {name: pace for name, pace in paces.items() if pace is not None}

    def throttle(self, dest: str, run: Run, entry: Entry, rate: float | None) -> None:
        """Queue a claimed run behind its destination's rate limit (``rate``: its
        endpoint's); it gets a reservation, and is scheduled for it, when its turn
        comes within PACE_HORIZON. Its record says when it is expected."""
        self._throttle(
            keys={
                "running_key": self._keys.running(),
                "throttled_key": self._keys.destination_throttled(dest),
                "delivery_key": self._keys.delivery(run.delivery_id),
                "due_key": self._keys.due(),
                "breaker_key": self._keys.destination_breaker(dest),
                "paced_key": self._keys.destination_paced(dest),
                "scheduled_key": self._keys.scheduled(),
            },
            args={
                "member": run.member,
                "now": time.time(),
                "expected_at": entry.retry_at,
                "expected_iso": isoformat(at(entry.retry_at)),
                "delivery_id": run.delivery_id,
                "limit": self._settings.destination_concurrency,
                "rate": rate or 0,
                "horizon": PACE_HORIZON,
            },
        )

    def pace(self, run: Run, start: float) -> None:
        """Schedule a claimed run for the start it reserved under its destination's rate
        limit, without attempting it: its claim is released and its record says when
        it is due. One MULTI: the run is never both claimed and scheduled, nor neither."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._keys.running(), run.member)
            pipe.hset(self._keys.delivery(run.delivery_id), "next_attempt_at", isoformat(at(start)))
            pipe.zadd(self._keys.due(), {run.delivery_id: start})
            pipe.zadd(self._keys.scheduled(), {run.member: start})
            pipe.execute()

    def wait_for_slot(
        self, dest: str, run: Run, entry: Entry, message: tuple[bytes, str] | None = None
    ) -> None:
        """Queue a claimed run at its busy destination; its record says when it should
        start. ``message``: its message as taken off a list in this Redis, and that
        list's key, kept for the wake to push back (else the promoter publishes one)."""
        now = time.time()
        # Expected start: the queue ahead drains a slot's worth per attempt time. Only
        # shown in the record (and overdue counts); the real start is a slot freeing.
        expected = now + (entry.ahead + 1) * entry.average_ms / 1000 / (
            self._settings.destination_concurrency
        )
        self._wait(
            keys={
                "running_key": self._keys.running(),
                "waiting_key": self._keys.destination_waiting(dest),
                "delivery_key": self._keys.delivery(run.delivery_id),
                "due_key": self._keys.due(),
                "inflight_key": self._keys.destination_inflight(dest),
                "scheduled_key": self._keys.scheduled(),
            },
            args={
                "member": run.member,
                "now": now,
                "expected_at": expected,
                "expected_iso": isoformat(at(expected)),
                "delivery_id": run.delivery_id,
                "limit": self._settings.destination_concurrency,
                **_kept_args(message),
            },
        )

    def defer(
        self, dest: str, run: Run, until: float, message: tuple[bytes, str] | None = None
    ) -> bool:
        """Set a claimed run aside without attempting it, its destination's circuit
        open: scheduled at ``until`` to probe (True), or, when another run is scheduled
        to probe already, waiting in the destination's queue for its result (False),
        ``message`` kept as :meth:`wait_for_slot` keeps it."""
        scheduled = self._defer(
            keys={
                "running_key": self._keys.running(),
                "scheduled_key": self._keys.scheduled(),
                "delivery_key": self._keys.delivery(run.delivery_id),
                "due_key": self._keys.due(),
                "breaker_key": self._keys.destination_breaker(dest),
                "waiting_key": self._keys.destination_waiting(dest),
            },
            args={
                "member": run.member,
                "now": time.time(),
                "due_at": until,
                "due_iso": isoformat(at(until)),
                "delivery_id": run.delivery_id,
                **_kept_args(message),
            },
        )
        return bool(scheduled)


def _kept_args(message: tuple[bytes, str] | None) -> dict[str, bytes | str]:
    """A waiting run's message to keep (wait_for_slot.lua, defer_attempt.lua)."""
    body, queue_key = message or (b"", "")
    return {"message": body, "queue_key": queue_key}


_PACE_FIELDS = ("pace_limit", "pace_rate", "paced_at")


def _pace(fields: list[bytes | None], settings: Settings) -> Pace | None:
    """The Pace in a breaker's _PACE_FIELDS, or None when it has none."""
    limit, rate, since = fields
    if limit is None and rate is None:
        return None
    concurrency = settings.destination_concurrency
    if limit is not None:
        concurrency = min(concurrency, max(1, math.floor(float(limit))))
    return Pace(
        concurrency,
        float(rate) if rate is not None and float(rate) > 0 else None,
        float(since or 0),
    )
