"""The archiver: moves finished deliveries from Redis to the PostgreSQL archive.

A delivery becomes archivable in the same Lua call that records its final attempt
(``status.lua``), scored by that moment; WEBHOOKS_ARCHIVE_AFTER_SECONDS later, an
archiver takes it, so no scan of Redis ever looks for work. Each round:

1. **take** a batch (``take_archivable.lua``): held for WEBHOOKS_ARCHIVE_LEASE_SECONDS,
   so exactly one archiver moves it; one whose archiver died is taken again after;
2. **write** it to PostgreSQL in one transaction (COPY, then an idempotent insert);
3. **forget** it in Redis (``forget_archived.lua``), only after the commit, leaving
   an idempotency marker per delivery.

A SIGKILL between any two steps loses nothing and doubles nothing: before the
commit, the batch is taken again; after it, writing it again changes nothing.

Every worker runs one beside its promoter (WEBHOOKS_ARCHIVE_IN_WORKERS), and
``webhooks archive run`` runs one alone. While PostgreSQL is away, deliveries
keep going and finished ones wait in Redis (``webhooks_archive_backlog``); the
archiver logs one line when it goes and one when it is back, then catches up. It
also drops the days past retention, once an hour.
"""

from __future__ import annotations

import logging
import threading
import time

from ..errors import ArchiveUnavailable
from ..storage.connection import failure as redis_failure
from ..system import System

__all__ = ["Archiver"]

logger = logging.getLogger(__name__)

#: How often an archiver drops the days past retention.
PRUNE_EVERY = 3600.0
#: The longest an idle archiver sleeps between looks.
IDLE_SECONDS = 0.5


class Archiver:
    """Moves one System's finished deliveries to its archive."""

    def __init__(self, system: System) -> None:
        if system.archive is None:
            raise ValueError("the archiver needs WEBHOOKS_ARCHIVE_DSN")
        self._system = system
        self._archive = system.archive
        self._settings = system.settings
        self._away = False
        self._pruned_at = 0.0
        self.moved = 0

    def run_once(self) -> int:
        """Move one batch; returns how many deliveries it took."""
        settings, store = self._settings, self._system.deliveries
        batch = store.take_archivable(
            settings.archive_batch, settings.archive_after_seconds, settings.archive_lease_seconds
        )
        if batch:
            self._archive.write(batch)
            store.forget_archived(batch)
            self.moved += len(batch)
        return len(batch)

    def prune(self) -> None:
        for day in self._archive.prune():
            logger.info("archive: dropped %s, past WEBHOOKS_RETENTION_DAYS", day.isoformat())

    def run_forever(self, stop: threading.Event) -> None:
        """Archive until ``stop`` is set, riding out PostgreSQL and Redis outages."""
        pause = 1.0
        while not stop.is_set():
            taken = self._round()
            if taken is None:  # failed: wait longer each time, up to 10 s
                stop.wait(pause)
                pause = min(pause * 2, 10.0)
                continue
            pause = 1.0
            if taken < self._settings.archive_batch:
                stop.wait(min(IDLE_SECONDS, max(self._settings.archive_after_seconds / 4, 0.05)))

    def _round(self) -> int | None:
        """Prune when due, then move one batch: how many it took, or None if the round
        failed (logged: PostgreSQL's going and coming back once each)."""
        try:
            if time.monotonic() - self._pruned_at > PRUNE_EVERY:
                self.prune()
                self._pruned_at = time.monotonic()
            taken = self.run_once()
        except ArchiveUnavailable as error:
            if not self._away:
                logger.warning(
                    "archive: PostgreSQL is away (%s); finished deliveries wait in Redis "
                    "(webhooks_archive_backlog) and delivery goes on",
                    error,
                )
                self._away = True
            return None
        except Exception as error:
            if (reason := redis_failure(error)) is None:
                logger.exception("archive: a round failed; trying again")
            else:
                logger.warning("archive: Redis failed (%s); trying again", reason)
            return None
        if self._away:
            logger.warning(
                "archive: PostgreSQL is back; catching up (%d finished deliveries waiting)",
                self._system.deliveries.archive_backlog(),
            )
            self._away = False
        return taken
