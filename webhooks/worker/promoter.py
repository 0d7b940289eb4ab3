"""The promoter: inside every worker, it turns due parked retries into Celery messages.

It also runs the two recoveries that make "nothing lost" hold without waiting
for the broker's visibility timeout:

- an attempt claimed but never recorded (its worker was SIGKILLed, OOM-killed or
  lost with its machine) is scheduled again once its claim lapses;
- a delivery overdue by twice ``WEBHOOKS_RECOVERY_SECONDS`` with nothing
  scheduled, claimed or in flight (its message was lost, say in the last second
  before a Redis crash) is scheduled again: the backstop.

Every worker runs one (:class:`~.steps.PromoterStep`); the Lua move in
:meth:`~webhooks.storage.schedule.Schedule.take_due` gives each due entry to
exactly one of them, and each idle pass costs one Redis call.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from ..errors import EnqueueFailed
from ..models import Run
from ..producer import enqueue
from ..settings import get_settings
from ..storage.connection import unavailable
from ..storage.deliveries import get_store
from ..storage.schedule import get_schedule

__all__ = ["Promoter"]

logger = logging.getLogger(__name__)
BATCH = 500
STALE_PROMOTION_SECONDS = 30.0


class Promoter:
    """Publishes due parked runs, and runs the two recoveries, one pass at a time."""

    def __init__(self) -> None:
        self.settings = get_settings()
        self.schedule = get_schedule()
        self._next_recovery = 0.0
        self._next_backstop = 0.0

    def publish(self, runs: list[Run], now: float) -> None:
        """Publish taken runs to their deliveries' own queues; what does not go out is
        put back in the schedule, due now."""
        by_queue: dict[str | None, list[Run]] = {}
        # Each message goes on with its producer's trace: the promoter has none of its own.
        contexts: dict[str, dict[str, str]] = {}
        routes = get_store().routes([run.delivery_id for run in runs])
        for run, (queue, trace) in zip(runs, routes, strict=True):
            by_queue.setdefault(queue, []).append(run)
            if trace:
                contexts[run.delivery_id] = json.loads(trace)
        refused: EnqueueFailed | None = None
        for queue, taken in by_queue.items():
            try:
                self._publish(taken, queue, now, contexts)
            except EnqueueFailed as exc:
                refused = exc  # the other queues' runs still go out
        if refused is not None:
            raise refused

    def _publish(
        self, taken: list[Run], queue: str | None, now: float, contexts: dict[str, dict[str, str]]
    ) -> None:
        enqueue(taken, queue, undo=lambda _: self.schedule.put_back(taken, now), contexts=contexts)
        self.schedule.promoted(taken)

    def tick(self) -> int:
        """One pass; returns how many runs it published."""
        now = time.time()
        runs = self.schedule.take_due(now, BATCH)
        if runs:
            # Should this process die mid-publish, the runs stay in "promoting" and
            # come back to "scheduled" after STALE_PROMOTION_SECONDS.
            self.publish(runs, now)
        if time.monotonic() >= self._next_recovery:
            self._next_recovery = time.monotonic() + 1.0
            lapsed = self.schedule.requeue_lapsed_claims(now)
            stale = self.schedule.requeue_stale_promotions(now - STALE_PROMOTION_SECONDS, now)
            for run in lapsed:
                logger.warning(
                    "delivery %s: claimed attempt never finished; running it again", run.delivery_id
                )
            if stale:
                logger.warning("%d parked runs were taken but never published; again", len(stale))
        if time.monotonic() >= self._next_backstop:
            self._next_backstop = time.monotonic() + min(10.0, self.settings.recovery_seconds)
            self.backstop(now)
        return len(runs)

    def backstop(self, now: float) -> None:
        """Schedule overdue deliveries that have no next step anywhere."""
        store = get_store()
        overdue = store.overdue(now - 2 * self.settings.recovery_seconds, limit=200)
        for delivery_id in overdue:
            try:
                delivery = store.get(delivery_id)
            except LookupError:
                continue
            done = sum(1 for attempt in delivery.attempts if attempt.number > delivery.cycle_offset)
            run = Run(delivery_id, delivery.cycle, done)
            if self.schedule.is_pending(run):
                continue
            logger.warning(
                "delivery %s: overdue with nothing scheduled; scheduling attempt %d",
                delivery_id,
                delivery.attempt_number(done),
            )
            self.schedule.park_nx([run], now)
            store.push_due(delivery_id, now)

    def run_forever(self, stop: threading.Event) -> None:
        """Pass after pass until ``stop``; while Redis is away, one line and a slower pace."""
        away = 0.0  # seconds to wait while Redis cannot be reached
        while not stop.is_set():
            try:
                published = self.tick()
            except Exception as error:
                if not unavailable(error):
                    logger.exception("promoter pass failed; retrying")
                elif not away:
                    logger.warning("promoter: Redis unavailable (%s); waiting for it", error)
                away = (
                    min(max(away * 2, self.settings.promote_interval_seconds), 1.0)
                    if (unavailable(error))
                    else 0.0
                )
                published = 0
            else:
                if away:
                    logger.warning("promoter: Redis is back")
                away = 0.0
            if published < BATCH:
                stop.wait(away or self.settings.promote_interval_seconds)
