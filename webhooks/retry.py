"""The retry policy: when a failed attempt is tried again, where it waits, and when we give up.

Two named outcomes, so nothing else computes a schedule:
:class:`RetryLater` (wait ``countdown`` seconds, parked in Redis or as a broker ETA
message, then attempt again) and :class:`RetriesExhausted` (stop; the delivery
is marked ``retries_exhausted``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from .settings import Settings

__all__ = ["MAX_RETRIES", "BackoffPolicy", "RetriesExhausted", "RetryLater", "ScheduleRow"]

#: Retries after the first attempt, so a delivery gets at most 15 attempts.
MAX_RETRIES = 14


@dataclass(frozen=True)
class RetryLater:
    """Attempt again in ``countdown`` seconds. ``parked``: the wait is long, so the
    run waits in Redis's schedule, not in a worker's memory as an ETA message."""

    countdown: float
    parked: bool = False


#: The shortest wait RabbitMQ's delay queues take (Celery rounds a countdown down to
#: whole seconds, and refuses zero): shorter ones park in Redis, with some margin
#: for the time between deciding and publishing.
NATIVE_DELAY_MIN = 1.5


@dataclass(frozen=True)
class RetriesExhausted:
    """No attempt follows: the delivery is ``retries_exhausted`` after ``attempts``."""

    attempts: int


@dataclass(frozen=True)
class ScheduleRow:
    """One row of the nominal retry schedule, as the README shows it."""

    attempt: int  # the attempt this wait leads to (2 is the first retry)
    wait: float  # seconds after the previous attempt
    elapsed: float  # seconds after the first attempt


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff: retry n (0-based) waits ``base * 2**n``, scaled by jitter."""

    base: float
    jitter: float = 0.0
    max_retries: int = MAX_RETRIES
    retry_after_max: float = 3600.0
    park_threshold: float = 30.0
    native_delays: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> BackoffPolicy:
        return cls(
            base=settings.retry_base_seconds,
            jitter=settings.retry_jitter,
            retry_after_max=settings.retry_after_max_seconds,
            park_threshold=settings.park_threshold_seconds,
            native_delays=settings.native_delays,
        )

    def wait(self, countdown: float) -> RetryLater:
        """A run ``countdown`` seconds from now, and where it waits: the one place
        that decides between parking and a broker ETA message.

        On Redis, a broker ETA message is held unacknowledged by a worker until
        due: memory per waiting retry, and a redelivery to another worker whenever
        the wait outlasts the visibility timeout. Short waits stay ETAs; long ones
        park. On RabbitMQ (``native_delays``), a wait of any length waits in its
        delay queues, which count whole seconds: Celery refuses a delay under one
        second there, so only such waits park.
        """
        if self.native_delays:
            return RetryLater(countdown, parked=countdown < NATIVE_DELAY_MIN)
        return RetryLater(countdown, parked=countdown > self.park_threshold)

    def nominal_wait(self, retries: int) -> float:
        return self.base * float(2**retries)

    def after_failure(
        self, retries: int, retry_after: float | None = None
    ) -> RetryLater | RetriesExhausted:
        """Decide what follows a failed attempt, given the retries already made.

        A receiver's Retry-After (429, 503) can lengthen the wait, up to
        ``retry_after_max``, never shorten it; the attempt still counts.
        """
        if retries >= self.max_retries:
            return RetriesExhausted(attempts=retries + 1)
        wait = self.nominal_wait(retries)
        if self.jitter:
            # Spreads retries of deliveries that failed together (one endpoint
            # outage) so they do not all come back in the same second.
            wait *= random.uniform(1 - self.jitter, 1 + self.jitter)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.retry_after_max))
        return self.wait(wait)

    def schedule(self) -> list[ScheduleRow]:
        """The nominal schedule (no jitter), one row per retry."""
        rows, elapsed = [], 0.0
        for retries in range(self.max_retries):
            wait = self.nominal_wait(retries)
            elapsed += wait
            rows.append(ScheduleRow(attempt=retries + 2, wait=wait, elapsed=elapsed))
        return rows

    def ahead(self, made: int, next_at: datetime) -> list[tuple[int, datetime]]:
        """The attempts of a cycle still to come, after ``made`` of them, the next one due
        at ``next_at``: (its number in the cycle, when it is due if every one before it
        fails), the later ones at :meth:`schedule`'s nominal waits. The real times may
        come later (jitter, a receiver's Retry-After, a worker that was busy)."""
        if made > self.max_retries:
            return []
        elapsed = {1: 0.0} | {row.attempt: row.elapsed for row in self.schedule()}
        start = elapsed[made + 1]
        return [
            (attempt, next_at + timedelta(seconds=since - start))
            for attempt, since in elapsed.items()
            if attempt > made
        ]
