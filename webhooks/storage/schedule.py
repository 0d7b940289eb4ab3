"""Durable scheduling in Redis: parked runs, runs being promoted, and attempt claims.

A member names one run of the delivery task, ``{delivery_id}:{cycle}:{retries}``
(:class:`~webhooks.models.Run`).

- ``webhooks:scheduled``  runs waiting for their due time (score: due, Unix seconds)
- ``webhooks:promoting``  runs taken off ``scheduled`` whose message is being
                          published (score: when taken); put back if a promoter dies
- ``webhooks:running``    runs whose attempt is claimed (score: when the claim lapses)
- ``webhooks:broker``     the broker the workers publish to (see :meth:`Schedule.note_broker`)

Each transition is one Lua script or one MULTI, so a run is in at most one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import redis

from ..models import Run
from .keys import Keys
from .scripts import Script

__all__ = ["Schedule"]


class Schedule:
    """Owns the three sorted sets above: parking, promotion hand-over and claims."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self._redis = client
        self._keys = keys
        self._move = Script(client, "move_due")

    def note_broker(self, broker: str) -> str | None:
        """Record ``broker`` as the one this store's workers publish to; the broker
        recorded before, when it was another. Any promoter may take any parked run, and
        publishes it to its own broker: workers of one store must share one."""
        previous = cast(bytes | None, self._redis.set(self._keys.broker(), broker, get=True))
        before = previous.decode() if previous is not None else None
        return before if before != broker else None

    def park_nx(self, runs: Sequence[Run], due: float) -> None:
        """Park ``runs`` until ``due``, unless already parked (then their due time stands)."""
        if runs:
            self._redis.zadd(self._keys.scheduled(), {run.member: due for run in runs}, nx=True)

    def take_handed(self, run: Run) -> bool:
        """Take out of the schedule a run an attempt's record handed this process (it
        waits there a moment, for the promoter should the record's reply be lost);
        False if the promoter took it already."""
        return bool(self._redis.zrem(self._keys.scheduled(), run.member))

    def due_now(self, runs: Sequence[Run], now: float) -> None:
        """Make runs that are still scheduled due at ``now`` (those taken stay taken)."""
        if runs:
            self._redis.zadd(self._keys.scheduled(), {run.member: now for run in runs}, xx=True)

    def is_pending(self, run: Run) -> bool:
        """Whether ``run`` is scheduled, being promoted or running."""
        with self._redis.pipeline(transaction=False) as pipe:
            for key in (self._keys.scheduled(), self._keys.promoting(), self._keys.running()):
                pipe.zscore(key, run.member)
            return any(score is not None for score in pipe.execute())

    def has_next(self, run: Run) -> bool:
        """Whether the run after ``run`` is already scheduled, being promoted or running."""
        return self.is_pending(run.next())

    def _moved(
        self, source: str, target: str, max_score: float, new_score: float, limit: int
    ) -> list[Run]:
        members = self._move(
            keys={"source_key": source, "target_key": target},
            args={"max_score": max_score, "new_score": new_score, "limit": limit},
        )
        return [Run.parse(member) for member in cast(list[bytes], members)]

    def take_due(self, now: float, limit: int) -> list[Run]:
        """Atomically take due runs for publishing; only one promoter gets each."""
        return self._moved(self._keys.scheduled(), self._keys.promoting(), now, now, limit)

    def promoted(self, runs: Sequence[Run]) -> None:
        """The runs' messages went out: they leave ``promoting``."""
        if runs:
            self._redis.zrem(self._keys.promoting(), *(run.member for run in runs))

    def put_back(self, runs: Sequence[Run], now: float) -> None:
        """Runs taken for publishing whose messages did not go out: due again now."""
        if runs:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self._keys.promoting(), *(run.member for run in runs))
                pipe.zadd(self._keys.scheduled(), {run.member: now for run in runs}, nx=True)
                pipe.execute()

    def requeue_stale_promotions(self, older_than: float, now: float) -> list[Run]:
        """Runs a promoter took but never finished publishing (it died): due again now."""
        return self._moved(self._keys.promoting(), self._keys.scheduled(), older_than, now, 1000)

    def requeue_lapsed_claims(self, now: float) -> list[Run]:
        """Attempts claimed but never recorded (the worker died mid-attempt): due again now."""
        return self._moved(self._keys.running(), self._keys.scheduled(), now, now, 1000)

    def waiting(self) -> int:
        """How many runs are parked."""
        return int(self._redis.zcard(self._keys.scheduled()))
