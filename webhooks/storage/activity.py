"""The hourly activity counters the portal's and the console's charts read.

The scripts that record attempts and stop deliveries (record_attempt.lua,
set_status.lua, through ``lua/activity.lua``) bump them in the same call that
writes the record, so drawing a chart reads a handful of small hashes and never
scans deliveries. Each hour has two hashes: every tenant's
(:meth:`.Keys.activity`, fields ``<kind>``) and each tenant's
(:meth:`.Keys.tenant_activity`, fields ``<kind>:<endpoint id>``). Each expires
:data:`ACTIVITY_DAYS` days after its first count, past the longest window a
chart shows.

The kinds (:data:`KINDS`): ``delivered_first_try`` and ``delivered_after_retries``
(a delivery whose attempt got a 2XX, on the first attempt of its cycle or a later
one), ``failed_attempts`` (every attempt that did not) and ``exhausted`` (a delivery
that became ``retries_exhausted``: out of retries, or stopped). A delivery's outcome
counts once per cycle: not again when a stopped delivery's last attempt comes back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from ..models import Attempt, DeliveryStatus, Run
from .keys import Keys

__all__ = [
    "ACTIVITY_DAYS",
    "KINDS",
    "WINDOWS",
    "Activity",
    "ActivityReport",
    "EndpointActivity",
    "activity_args",
    "activity_keys",
    "forget_tenant_activity",
]

#: How long an hour's counters are kept: a day more than the longest window.
ACTIVITY_DAYS = 8
_TTL = ACTIVITY_DAYS * 86400
_HOUR = 3600

KINDS = ("delivered_first_try", "delivered_after_retries", "failed_attempts", "exhausted")

#: The windows a chart shows, in hours.
WINDOWS = {"24h": 24, "7d": 7 * 24}


def _hour_of(moment: datetime) -> int:
    return int(moment.timestamp()) // _HOUR * _HOUR


def activity_keys(keys: Keys, tenant_id: str | None, moment: datetime) -> dict[str, str]:
    """The hashes a script counts into for something that happened at ``moment``: every
    tenant's hour, and the delivery's tenant's ('' for a delivery of no tenant)."""
    hour = _hour_of(moment)
    return {
        "activity_key": keys.activity(hour),
        "tenant_activity_key": keys.tenant_activity(tenant_id, hour) if tenant_id else "",
    }


def activity_args(
    run: Run | None, attempt: Attempt | None, status: DeliveryStatus
) -> dict[str, Any]:
    """What an attempt (or a status change without one: ``attempt`` None) counts as."""
    outcome = ""
    if status is DeliveryStatus.RETRIES_EXHAUSTED:
        outcome = "exhausted"
    elif status is DeliveryStatus.DELIVERED and attempt is not None and attempt.succeeded:
        first = run is not None and run.retries == 0
        outcome = "delivered_first_try" if first else "delivered_after_retries"
    failed = attempt is not None and not attempt.succeeded
    return {
        "attempt_kind": "failed_attempts" if failed else "",
        "outcome_kind": outcome,
        "activity_ttl": _TTL,
    }


@dataclass(frozen=True)
class EndpointActivity:
    """One endpoint's totals over a window."""

    endpoint_id: str
    delivered: int
    failed_attempts: int
    exhausted: int

    @property
    def success_rate(self) -> float | None:
        """The share of its attempts that got a 2XX (None: no attempt in the window).
        Every delivered delivery had exactly one such attempt in its cycle."""
        attempts = self.delivered + self.failed_attempts
        return round(self.delivered / attempts, 4) if attempts else None


@dataclass(frozen=True)
class ActivityReport:
    """A window's hourly counts, oldest hour first, and each endpoint's totals."""

    hours: list[tuple[datetime, dict[str, int]]]
    endpoints: dict[str, EndpointActivity]


class Activity:
    """Reads the hourly counters: one small hash per hour of the window, in one round trip."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys

    def _hours(self, hours: int, until: datetime) -> list[int]:
        last = _hour_of(until)
        return [last - _HOUR * back for back in range(hours - 1, -1, -1)]

    def _read(self, names: Sequence[str]) -> list[dict[bytes, bytes]]:
        with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(name)
            found: list[dict[bytes, bytes]] = pipe.execute()
        return found

    def tenant(self, tenant_id: str, hours: int, until: datetime) -> ActivityReport:
        """The tenant's last ``hours`` hours up to ``until``'s, summed over its endpoints
        (deleted ones included), and each endpoint's totals."""
        starts = self._hours(hours, until)
        found = self._read([self._keys.tenant_activity(tenant_id, hour) for hour in starts])
        rows: list[tuple[datetime, dict[str, int]]] = []
        totals: dict[str, dict[str, int]] = {}
        for start, fields in zip(starts, found, strict=True):
            row = dict.fromkeys(KINDS, 0)
            for name, value in fields.items():
                kind, _, endpoint_id = name.decode().partition(":")
                if kind not in row:
                    continue  # a kind a newer release counts, read by an older one
                row[kind] += int(value)
                if endpoint_id:
                    per = totals.setdefault(endpoint_id, dict.fromkeys(KINDS, 0))
                    per[kind] += int(value)
            rows.append((datetime.fromtimestamp(start, UTC), row))
        return ActivityReport(rows, {e: _endpoint(e, per) for e, per in totals.items()})

    def everyone(self, hours: int, until: datetime) -> ActivityReport:
        """Every tenant's last ``hours`` hours (deliveries of no tenant included)."""
        starts = self._hours(hours, until)
        found = self._read([self._keys.activity(hour) for hour in starts])
        rows = []
        for start, fields in zip(starts, found, strict=True):
            counted = {name.decode(): int(value) for name, value in fields.items()}
            row = {kind: counted.get(kind, 0) for kind in KINDS}
            rows.append((datetime.fromtimestamp(start, UTC), row))
        return ActivityReport(rows, {})


def _endpoint(endpoint_id: str, per: dict[str, int]) -> EndpointActivity:
    return EndpointActivity(
        endpoint_id,
        delivered=per["delivered_first_try"] + per["delivered_after_retries"],
        failed_attempts=per["failed_attempts"],
        exhausted=per["exhausted"],
    )


def forget_tenant_activity(client: redis.Redis, keys: Keys, tenant_id: str) -> None:
    """Delete a tenant's counters (every hour still kept), so that a tenant registered
    again under its id starts with an empty chart."""
    last = int(time.time()) // _HOUR * _HOUR
    hours = range(last - _TTL - _HOUR, last + 2 * _HOUR, _HOUR)
    client.delete(*(keys.tenant_activity(tenant_id, hour) for hour in hours))
