"""The worker's bootsteps, which the Celery app names by string (webhooks/broker/app.py).

- :class:`PreflightStep` checks, before anything runs, that the Celery and kombu
  internals this package relies on are there, and stops the worker with one
  line naming the first one that is not; then it warns, loudly, if Redis may
  evict keys, and if endpoints' secrets are stored in clear (no
  ``WEBHOOKS_ENCRYPTION_KEYS``). With ``WEBHOOKS_TRACING`` on, it has each pool process traced.
- :class:`PromoterStep` runs a :class:`~.promoter.Promoter` thread for as long as
  the worker runs.
- :class:`OutboxStep` runs an outbox relay thread beside it when
  ``WEBHOOKS_OUTBOX_DSN`` is set.
- :class:`ArchiveStep` runs an :class:`~.archiver.Archiver` thread when
  ``WEBHOOKS_ARCHIVE_DSN`` is set (and ``WEBHOOKS_ARCHIVE_IN_WORKERS`` is on).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from celery import bootsteps, signals

from .. import extras, tracing
from ..broker import internals
from ..errors import MissingExtra
from ..settings import shown_url
from ..storage.cipher import warn_if_unencrypted
from ..storage.connection import eviction_policy
from ..system import System
from .archiver import Archiver
from .promoter import Promoter

__all__ = ["ArchiveStep", "OutboxStep", "PreflightStep", "PromoterStep"]

logger = logging.getLogger(__name__)


class PreflightStep(bootsteps.StartStopStep):
    """Refuses to start a worker whose Celery or kombu lacks a name we rely on, and
    warns about a Redis that may evict deliveries."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        if absent := internals.missing():
            # One line, then out: a traceback from deep inside a delivery later would
            # say far less about what to do.
            print(
                f"webhooks: the installed Celery/kombu lacks {absent[0]}, which webhooks "
                "relies on; install the versions pinned in pyproject.toml",
                file=sys.stderr,
            )
            sys.exit(1)
        settings = System.of(worker.app).settings
        if settings.outbox_dsn is not None:
            try:
                extras.require("outbox", "WEBHOOKS_OUTBOX_DSN (a relay in every worker)")
            except MissingExtra as missing:
                print(f"webhooks: {missing}", file=sys.stderr)
                sys.exit(1)
        if settings.tracing:
            if not tracing.available():
                print(
                    "webhooks: WEBHOOKS_TRACING is on but OpenTelemetry is not installed; "
                    "pip install 'celery-webhooks[otel]'",
                    file=sys.stderr,
                )
                sys.exit(1)
            # Instrumented in each pool process, as OpenTelemetry asks of forking
            # servers: a provider's export thread does not survive a fork.
            signals.worker_process_init.connect(_trace_process, weak=False)
            signals.worker_process_shutdown.connect(_flush_traces, weak=False)
            if "prefork" not in getattr(worker.pool_cls, "__module__", str(worker.pool_cls)):
                tracing.instrument()  # no pool processes: this one runs the tasks

    def start(self, worker: Any) -> None:
        system = System.of(worker.app)
        settings = system.settings
        warn_if_unencrypted(settings, logger)
        if settings.native_delays:
            _declare_queues(worker.app)
        broker = shown_url(settings.broker)
        try:
            policy = eviction_policy(system.redis)
            previous = system.schedule.note_broker(broker)
        except Exception as error:  # the worker keeps trying to connect; so will we, then
            logger.warning("could not check Redis's settings at start: %s", error)
            return
        if previous is not None:
            # Any worker's promoter may take any parked run and publishes it to its own
            # broker, where workers on another broker never see it: until the backstop
            # finds it, 2 x WEBHOOKS_RECOVERY_SECONDS late.
            logger.warning(
                "this store's workers last started with the broker %s; this one uses %s. "
                "Workers of one store (and key prefix) must share one broker: expected "
                "once per worker while moving to a new broker, a misconfiguration "
                "otherwise.",
                previous,
                broker,
            )
        if policy != "noeviction":
            logger.warning(
                "Redis maxmemory-policy is %s, not noeviction: under memory pressure Redis "
                "may silently evict waiting deliveries and their records (they carry TTLs). "
                "Set maxmemory-policy noeviction on this Redis.",
                policy,
            )


def _declare_queues(app: Any) -> None:
    """Declare every queue the app knows, with its exchange. Celery's native delayed
    delivery (started after this step) binds each of them, consumed here or not, to
    its delay exchange, and one missing turns native delays off for the whole
    worker (seen with ``-Q`` naming only other queues)."""
    try:
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            for queue in app.amqp.queues.values():
                queue.bind(channel).declare()
    except Exception as error:  # Celery's own connection retries report the broker
        logger.warning("could not declare the queues on the broker: %s", error)


def _trace_process(**_: Any) -> None:
    tracing.instrument()


def _flush_traces(**_: Any) -> None:
    tracing.flush()


class _ThreadStep(bootsteps.StartStopStep):
    """Runs one loop in a thread of the worker's main process while the worker runs."""

    requires = ("celery.worker.components:Pool",)
    name_of_thread = ""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def loop(self, system: System) -> Callable[[threading.Event], None] | None:
        raise NotImplementedError

    def start(self, worker: Any) -> None:
        loop = self.loop(System.of(worker.app))
        if loop is None:
            return
        self._thread = threading.Thread(
            target=loop, args=(self._stop,), name=self.name_of_thread, daemon=True
        )
        self._thread.start()

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class PromoterStep(_ThreadStep):
    """Runs a :class:`~.promoter.Promoter` thread for as long as the worker runs."""

    name_of_thread = "webhooks-promoter"

    def loop(self, system: System) -> Callable[[threading.Event], None]:
        return Promoter(system).run_forever


class OutboxStep(_ThreadStep):
    """With ``WEBHOOKS_OUTBOX_DSN``, runs an outbox relay thread: every worker relays,
    each taking rows the others have not locked."""

    name_of_thread = "webhooks-outbox-relay"

    def loop(self, system: System) -> Callable[[threading.Event], None] | None:
        settings = system.settings
        if settings.outbox_dsn is None:
            return None
        # Only here: psycopg is the outbox extra's, which a worker without a DSN lacks.
        from ..outbox.relay import Relay

        return Relay(
            system,
            settings.outbox_dsn.get_secret_value(),
            settings.outbox_batch,
            settings.outbox_poll_seconds,
        ).run_forever


class ArchiveStep(_ThreadStep):
    """With ``WEBHOOKS_ARCHIVE_DSN`` (and ``WEBHOOKS_ARCHIVE_IN_WORKERS``), runs an
    archiver thread: every worker archives, each batch taken by one of them."""

    name_of_thread = "webhooks-archiver"

    def loop(self, system: System) -> Callable[[threading.Event], None] | None:
        if system.archive is None or not system.settings.archive_in_workers:
            return None
        return Archiver(system).run_forever
