"""Keeping the claims of attempts in flight alive, so that their lease can be short.

An attempt's claim and its destination slot are leased for
``Settings.claim_lease_seconds`` (the attempt's deadline plus 5 s). While this
process is making the attempt, a thread renews them every third of that, in one
Redis call for all of the process's attempts. A worker that dies stops renewing,
and its claims lapse within the lease: the promoter then runs those attempts
again, and the slots free up for the destination's other deliveries.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..models import Run
from ..storage.deliveries import DeliveryStore

__all__ = ["holding"]

logger = logging.getLogger(__name__)


class _Keeper:
    """The renewing thread of one process, and the attempts it keeps in one store."""

    def __init__(self, store: DeliveryStore) -> None:
        self._store = store
        self._held: dict[str, tuple[Run, str | None, float]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = 0

    def hold(self, run: Run, dest: str | None, lease: float) -> None:
        with self._lock:
            if self._pid != os.getpid():  # first use in this (possibly forked) process
                self._pid, self._held = os.getpid(), {}
                threading.Thread(target=self._run, name="webhooks-leases", daemon=True).start()
            self._held[run.member] = (run, dest, lease)
        self._wake.set()

    def release(self, run: Run) -> None:
        with self._lock:
            self._held.pop(run.member, None)

    def _run(self) -> None:
        while True:
            with self._lock:
                held = list(self._held.values())
            if not held:
                self._wake.wait()  # until the next attempt
                self._wake.clear()
                continue
            # Every third of a lease, whatever is held then: an attempt claimed just
            # after a renewal still has two thirds of its lease left at the next.
            lease = min(lease for _, _, lease in held)
            time.sleep(lease / 3)
            with self._lock:
                held = list(self._held.values())
            if not held:
                continue
            try:
                self._store.renew_claims([(run, dest) for run, dest, _ in held], lease)
            except Exception as error:
                # The attempts go on; should Redis stay away, their claims lapse and
                # they are run again, which is what a lapse is for.
                logger.warning("could not renew %d attempt claims: %s", len(held), error)


#: One keeper per store (a worker process has one; a test process may have several),
#: kept for the process's life, as its renewing thread is.
_keepers: dict[DeliveryStore, _Keeper] = {}
_keepers_lock = threading.Lock()


@contextmanager
def holding(store: DeliveryStore, run: Run, dest: str | None, lease: float) -> Iterator[None]:
    """Renew ``run``'s claim in ``store`` (and its slot at ``dest``) for as long as the
    block runs."""
    with _keepers_lock:
        keeper = _keepers.get(store)
        if keeper is None:
            keeper = _keepers[store] = _Keeper(store)
    keeper.hold(run, dest, lease)
    try:
        yield
    finally:
        keeper.release(run)
