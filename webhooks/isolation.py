"""Per-destination isolation: a slow or dead receiver must not take all the workers.

- **Concurrency limit.** At most ``WEBHOOKS_DESTINATION_CONCURRENCY`` attempts
  are in flight to one destination across all workers. A run over the limit
  waits in the destination's queue, unattempted and uncounted, and each
  finished attempt there lets the longest-waiting run in: a slow or dead
  receiver holds a few worker slots, and its backlog costs nothing while it waits.
- **Circuit breaker.** ``WEBHOOKS_BREAKER_FAILURES`` consecutive failed attempts
  open the destination's circuit: its deliveries are parked, unattempted, for
  ``WEBHOOKS_BREAKER_COOLDOWN_SECONDS``. Then one probe attempt goes out; a 2XX
  closes the circuit, a failure opens it again for twice as long (at most 15
  minutes). Parked and deferred runs keep their retry accounting: only real
  attempts count toward the 15.

A destination is the endpoint for endpoint deliveries and ``host:port`` for
bare-URL ones.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import redis

from . import keys, lua
from .clock import at, isoformat
from .schedule import Run
from .settings import get_settings

__all__ = ["Entry", "Gate", "destination", "entry", "get_gate"]

MAX_COOLDOWN = 900.0


def destination(url: str, endpoint_id: str | None) -> str:
    if endpoint_id:
        return endpoint_id
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


@dataclass(frozen=True)
class Entry:
    allowed: bool
    retry_at: float = 0.0  # when to try again if the circuit is open
    busy: bool = False  # at the concurrency limit: wait for a slot
    average_ms: float = 0.0
    ahead: int = 0  # runs already waiting for a slot there


def entry(tag: str, value: str = "", ahead: str = "") -> Entry:
    """The Entry for what entering a destination answered (lua._ENTER_FN)."""
    if tag in ("ok", "probe"):
        return Entry(True)
    if tag == "open":
        # Spread the parked runs over a second past the reopening, not all at once.
        return Entry(False, float(value) + random.uniform(0, 1))
    return Entry(False, busy=True, average_ms=float(value), ahead=int(ahead or 0))


class Gate:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._enter = client.register_script(lua.ENTER_DESTINATION)
        self._defer = client.register_script(lua.DEFER_ATTEMPT)
        self._wait = client.register_script(lua.WAIT_FOR_SLOT)

    def enter(self, dest: str, run: Run, lease: float) -> Entry:
        """Enter ``dest`` on its own; the claim usually does this in the same call."""
        now = time.time()
        reply = self._enter(keys=[keys.destination_inflight(dest), keys.destination_breaker(dest),
                                  keys.destination_waiting(dest)],
                            args=[now, now + lease, run.member,
                                  get_settings().destination_concurrency])
        return entry(*(value.decode() for value in reply))

    def wait_for_slot(self, dest: str, run: Run, entry: Entry) -> None:
        """Queue a claimed run at its busy destination; its record says when it should start."""
        now = time.time()
        # Expected start: the queue ahead drains a slot's worth per attempt time. Only
        # shown in the record (and overdue counts); the real start is a slot freeing.
        expected = now + (entry.ahead + 1) * entry.average_ms / 1000 / (
            get_settings().destination_concurrency)
        self._wait(keys=[keys.running(), keys.destination_waiting(dest),
                         keys.delivery(run.delivery_id), keys.due()],
                   args=[run.member, now, expected, isoformat(at(expected)), run.delivery_id])

    def defer(self, run: Run, until: float) -> None:
        """Put a claimed run back in the schedule without attempting it."""
        self._defer(keys=[keys.running(), keys.scheduled(), keys.delivery(run.delivery_id),
                          keys.due()],
                    args=[run.member, until, isoformat(at(until)), run.delivery_id])


@lru_cache(maxsize=1)
def get_gate() -> Gate:
    from .store import get_store

    return Gate(get_store().redis)
