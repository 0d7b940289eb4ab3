"""The worker's bootsteps, which the Celery app names by string (webhooks/broker/app.py).

- :class:`PreflightStep` checks, before anything runs, that the Celery and kombu
  internals this package relies on are there, and stops the worker with one
  line naming the first one that is not; then it warns, loudly, if Redis may
  evict keys.
- :class:`PromoterStep` runs a :class:`~.promoter.Promoter` thread for as long as
  the worker runs.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from celery import bootsteps

from ..broker import internals
from ..storage.connection import eviction_policy
from .promoter import Promoter

__all__ = ["PreflightStep", "PromoterStep"]

logger = logging.getLogger(__name__)


class PreflightStep(bootsteps.StartStopStep):
    """Refuses to start a worker whose Celery or kombu lacks a name we rely on, and
    warns about a Redis that may evict deliveries."""

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        if absent := internals.missing():
            # One line, then out: a traceback from deep inside a delivery later would
            # say far less about what to do.
            print(f"webhooks: the installed Celery/kombu lacks {absent[0]}, which webhooks "
                  "relies on; install the versions pinned in pyproject.toml", file=sys.stderr)
            sys.exit(1)

    def start(self, worker: Any) -> None:
        try:
            policy = eviction_policy()
        except Exception as error:  # the worker keeps trying to connect; so will we, then
            logger.warning("could not read Redis's maxmemory-policy: %s", error)
            return
        if policy != "noeviction":
            logger.warning(
                "Redis maxmemory-policy is %s, not noeviction: under memory pressure Redis "
                "may silently evict waiting deliveries and their records (they carry TTLs). "
                "Set maxmemory-policy noeviction on this Redis.", policy)


class PromoterStep(bootsteps.StartStopStep):
    """Runs a :class:`~.promoter.Promoter` thread for as long as the worker runs."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        self._thread = threading.Thread(target=Promoter().run_forever, args=(self._stop,),
                                        name="webhooks-promoter", daemon=True)
        self._thread.start()

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
