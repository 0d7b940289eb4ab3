"""The relay: committed outbox rows become deliveries, each exactly once.

One batch is one PostgreSQL transaction: take up to ``batch`` rows with ``FOR
UPDATE SKIP LOCKED`` (so relays running at once take different rows), publish
each, delete those published and mark those refused, commit. Killed anywhere in
between, the transaction aborts, the rows come back, and the next relay's
publish of the same events finds their deliveries there already: creating is
idempotent by event id and endpoint, so nothing is doubled and nothing lost.

It sleeps on ``LISTEN webhooks_outbox`` (the insert's NOTIFY arrives at commit),
with ``poll_seconds`` as the fallback; while Redis or PostgreSQL is away it logs
one line and tries again, slower.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from ..errors import InvalidInput, TenantNotFound
from ..events import loads_event
from ..producer import Producer
from ..system import System
from .table import CHANNEL, DELETE, FAIL, TAKE

__all__ = ["Relay", "drain", "first_line"]

logger = logging.getLogger(__name__)

#: Longest failure reason kept with a row.
FAILURE_LIMIT = 1000


class Relay:
    """Moves committed outbox rows into deliveries, batch after batch."""

    def __init__(
        self, system: System, dsn: str, batch: int = 100, poll_seconds: float = 1.0
    ) -> None:
        self.producer = Producer(system)
        self.dsn, self.batch, self.poll_seconds = dsn, batch, poll_seconds
        self.relayed = 0  # rows turned into deliveries by this relay
        self.failed = 0  # rows it marked failed

    def run_batch(self, conn: psycopg.Connection) -> int:
        """One batch in one transaction; returns how many rows it took."""
        with conn.transaction():
            rows = conn.execute(TAKE, {"limit": self.batch}).fetchall()
            done: list[int] = []
            for row_id, tenant, text, ordering_key in rows:
                try:
                    self.producer.publish(
                        loads_event(text), tenant=tenant, ordering_key=ordering_key
                    )
                except (InvalidInput, TenantNotFound) as refused:
                    # The event no longer validates, its id went to another event,
                    # or its tenant is gone: no retry makes it go, so it is kept
                    # for people to see (webhooks outbox list --failed).
                    conn.execute(
                        FAIL,
                        {
                            "id": row_id,
                            "failure": f"{type(refused).__name__}: {refused}"[:FAILURE_LIMIT],
                        },
                    )
                    logger.warning("outbox row %d failed: %s", row_id, type(refused).__name__)
                    self.failed += 1
                else:
                    done.append(row_id)
            if done:
                conn.execute(DELETE, {"ids": done})
        self.relayed += len(done)
        return len(rows)

    def run_forever(self, stop: threading.Event) -> None:
        """Batch after batch until ``stop``; between batches, wait for a commit."""
        away = 0.0
        while not stop.is_set():
            try:
                with self._connections() as (work, listen):
                    if away:
                        logger.warning("outbox relay: connected again")
                    away = 0.0
                    self._loop(work, listen, stop)
            except Exception as error:
                if not away:
                    logger.warning(
                        "outbox relay: %s (%s); trying again",
                        type(error).__name__,
                        first_line(error),
                    )
                away = min(max(away * 2, 0.1), 5.0)
                stop.wait(away)

    def _loop(
        self, work: psycopg.Connection, listen: psycopg.Connection, stop: threading.Event
    ) -> None:
        while not stop.is_set():
            if self.run_batch(work) == self.batch:
                continue  # more may be waiting
            # Any commit since LISTEN is queued on the connection: none is missed
            # between the batch and the wait. Waited for in short spells, so that a
            # stop is seen within half a second.
            deadline, woken = time.monotonic() + self.poll_seconds, False
            while not woken and not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                for _ in listen.notifies(timeout=min(left, 0.5), stop_after=1):
                    woken = True

    @contextmanager
    def _connections(self) -> Iterator[tuple[psycopg.Connection, psycopg.Connection]]:
        with (
            psycopg.connect(self.dsn, autocommit=True) as listen,
            psycopg.connect(self.dsn, autocommit=True) as work,
        ):
            listen.execute(f"LISTEN {CHANNEL}")
            yield work, listen


def first_line(error: BaseException) -> str:
    """What a PostgreSQL error may show: its first line (the rest may repeat the DSN,
    password included), at most 200 characters."""
    return str(error).strip().splitlines()[0][:200] if str(error).strip() else ""


def drain(system: System, dsn: str, batch: int = 100) -> int:
    """Relay every committed row now, then return how many were taken (for tests and
    one-off runs)."""
    relay, taken = Relay(system, dsn, batch), 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        while (n := relay.run_batch(conn)) > 0:
            taken += n
            if n < batch:
                break
    return taken
