"""The cluster's counters, kept in Redis by the scripts that record what they count.

Recording an attempt, creating deliveries and stopping them each bump their
counters in the same Lua call that writes the record (``metrics_key`` in their
headers): no extra round trip, nothing lost when a worker restarts, and every
worker on every host adds to the same figures. The Prometheus collector
(:mod:`webhooks.metrics`) reads them at scrape time with the gauges beside them.

Fields of the hash :func:`~.keys.metrics`:

- ``created``; ``finished:<status>`` (delivered, retries_exhausted);
- ``attempts:<outcome>:<error_kind>:<status_class>``;
- ``duration_bucket:<i>`` (attempts whose duration falls in bucket ``i`` of
  :data:`BUCKETS`, not cumulative; ``i == len(BUCKETS)`` is +Inf) and
  ``duration_sum`` (seconds);
- ``endpoints_disabled:<reason>`` (gone, failing);
- ``pace_lowered`` (times adaptive pacing lowered a destination's pace).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from ..models import Attempt
from ..settings import Settings
from .keys import Keys

__all__ = [
    "BUCKETS",
    "Counters",
    "Snapshot",
    "attempt_args",
    "metric_keys",
    "status_class",
]

#: Upper bounds of the attempt-duration histogram, in seconds: 5 ms to 30 s.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)

#: A breaker's hash expires a day after its last attempt; an open circuit left in the
#: index longer than that belongs to a destination nobody sends to any more.
CIRCUIT_MEMORY_SECONDS = 86400


def status_class(status_code: int | None) -> str:
    """``2xx`` ... ``5xx`` for an answer, ``none`` for no answer (or a nonsense code)."""
    if status_code is None or not 100 <= status_code < 600:
        return "none"
    return f"{status_code // 100}xx"


def metric_keys(settings: Settings, keys: Keys) -> dict[str, str]:
    """The keys the scripts count into, or '' each when ``WEBHOOKS_METRICS`` is off."""
    on = settings.metrics
    return {
        "metrics_key": keys.metrics() if on else "",
        "circuits_key": keys.open_circuits() if on else "",
    }


def attempt_args(attempt: Attempt) -> dict[str, Any]:
    """What record_attempt.lua counts an attempt under."""
    seconds = attempt.duration_ms / 1000
    return {
        "attempt_counter": f"attempts:{attempt.outcome}:{attempt.error_kind}:"
        f"{status_class(attempt.status_code)}",
        "duration_bucket": bisect_left(BUCKETS, seconds),
        "duration_seconds": seconds,
    }


@dataclass(frozen=True)
class Snapshot:
    """The counters and gauges of one scrape."""

    counters: Mapping[str, float]
    parked: int
    overdue: int
    open_circuits: int
    archive_backlog: int = 0
    paced: int = 0  # destinations adaptive pacing holds below their limits


class Counters:
    """Reads the counters, with the gauges kept beside them in the store."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    def snapshot(self, overdue_after: float) -> Snapshot:
        """Everything one scrape shows but the broker's queue depth, in one round trip.
        ``overdue`` counts as ``webhooks stats`` does: unfinished deliveries whose next
        attempt was due more than ``overdue_after`` seconds ago."""
        moment = time.time()
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._keys.metrics())
            pipe.zcard(self._keys.scheduled())
            pipe.zcount(self._keys.due(), "-inf", moment - overdue_after)
            pipe.zremrangebyscore(
                self._keys.open_circuits(), "-inf", moment - CIRCUIT_MEMORY_SECONDS
            )
            pipe.zcard(self._keys.open_circuits())
            pipe.zcard(self._keys.archivable())
            pipe.zcard(self._keys.archiving())
            # Its score is when the pace was last lowered; a pace whose breaker expired
            # (a day without attempts) went with it.
            pipe.zremrangebyscore(
                self._keys.paced_destinations(), "-inf", moment - CIRCUIT_MEMORY_SECONDS
            )
            pipe.zcard(self._keys.paced_destinations())
            fields, parked, overdue, _, circuits, waiting, taken, _, paced = pipe.execute()
        return Snapshot(
            {name.decode(): float(value) for name, value in fields.items()},
            int(parked),
            int(overdue),
            int(circuits),
            int(waiting) + int(taken),
            int(paced),
        )
