"""Durable scheduling in Redis: parked retries, attempt claims, and the backstop.

An entry names one run of the delivery task: ``{delivery_id}:{cycle}:{retries}``
(its attempt number follows from the retries and the cycle's offset).

- ``webhooks:scheduled``  runs waiting for their due time (score: due, Unix seconds)
- ``webhooks:promoting``  runs taken off ``scheduled`` whose message is being
                          published (score: when taken); put back if a promoter dies
- ``webhooks:running``    runs whose attempt is claimed (score: when the claim lapses)

Each transition is one Lua script or one MULTI, so a run is in at most one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import cast

import redis

from . import keys, lua

__all__ = ["Run", "Schedule", "get_schedule"]


@dataclass(frozen=True)
class Run:
    delivery_id: str
    cycle: int
    retries: int

    @property
    def member(self) -> str:
        return f"{self.delivery_id}:{self.cycle}:{self.retries}"

    @classmethod
    def parse(cls, member: str | bytes) -> Run:
        text = member.decode() if isinstance(member, bytes) else member
        delivery_id, cycle, retries = text.rsplit(":", 2)
        return cls(delivery_id, int(cycle), int(retries))

    def next(self) -> Run:
        return Run(self.delivery_id, self.cycle, self.retries + 1)


class Schedule:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._move = client.register_script(lua.MOVE_DUE)

    @staticmethod
    def park(pipe: redis.client.Pipeline, run: Run, due: float) -> None:
        pipe.zadd(keys.scheduled(), {run.member: due})

    def park_nx(self, run: Run, due: float) -> None:
        """Park ``run`` unless it already is (then its due time stands)."""
        self.redis.zadd(keys.scheduled(), {run.member: due}, nx=True)

    @staticmethod
    def release(pipe: redis.client.Pipeline, run: Run) -> None:
        pipe.zrem(keys.running(), run.member)

    def is_pending(self, run: Run) -> bool:
        """Whether ``run`` is scheduled, being promoted or running."""
        with self.redis.pipeline(transaction=False) as pipe:
            for key in (keys.scheduled(), keys.promoting(), keys.running()):
                pipe.zscore(key, run.member)
            return any(score is not None for score in pipe.execute())

    def has_next(self, run: Run) -> bool:
        """Whether the run after ``run`` is already scheduled, being promoted or running."""
        return self.is_pending(run.next())

    def _moved(self, source: str, destination: str, max_score: float, new_score: float,
               limit: int) -> list[Run]:
        members = self._move(keys=[source, destination], args=[max_score, new_score, limit])
        return [Run.parse(member) for member in cast(list[bytes], members)]

    def take_due(self, now: float, limit: int) -> list[Run]:
        """Atomically take due runs for publishing; only one promoter gets each."""
        return self._moved(keys.scheduled(), keys.promoting(), now, now, limit)

    def promoted(self, runs: list[Run]) -> None:
        if runs:
            self.redis.zrem(keys.promoting(), *(run.member for run in runs))

    def requeue_stale_promotions(self, older_than: float, now: float) -> list[Run]:
        """Runs a promoter took but never finished publishing (it died): due again now."""
        return self._moved(keys.promoting(), keys.scheduled(), older_than, now, 1000)

    def requeue_lapsed_claims(self, now: float) -> list[Run]:
        """Attempts claimed but never recorded (the worker died mid-attempt): due again now."""
        return self._moved(keys.running(), keys.scheduled(), now, now, 1000)

    def schedule_now(self, runs: list[Run], now: float) -> None:
        if runs:
            self.redis.zadd(keys.scheduled(), {run.member: now for run in runs}, nx=True)

    def waiting(self) -> int:
        return int(self.redis.zcard(keys.scheduled()))


@lru_cache(maxsize=1)
def get_schedule() -> Schedule:
    from .store import get_store

    return Schedule(get_store().redis)
