"""The one Redis connection of the delivery store, and typed wrappers for redis-py.

Every store in :mod:`webhooks.storage` is handed the client from
:func:`get_redis`; nothing else builds one, and nothing reaches into a store for it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar, cast

import redis
import redis.sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from ..settings import get_settings

__all__ = [
    "UNAVAILABLE",
    "eviction_policy",
    "get_redis",
    "persist",
    "transaction",
    "unavailable",
    "zrange_ids",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Connection losses and timeouts are retried this often by redis-py, within about
#: a second (plus the timeouts); then the caller sees the error. Every write
#: script is safe to repeat.
RETRIES = 3

_Sentinel: Any = redis.sentinel.Sentinel  # untyped in redis-py


def _retry(retries: int) -> Retry:
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries)


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """The client every store shares: one connection pool per process.

    With a ``sentinel://`` URL it is redis-py's Sentinel client of the primary: each
    new connection asks the sentinels where the primary is, and a connection to a
    primary that died or was demoted (READONLY) is dropped, so after a failover the
    retried command reaches the promoted replica.
    """
    settings = get_settings()
    timeouts: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_timeout_seconds,
    }
    retry = _retry(RETRIES)
    sentinel = settings.sentinel
    if sentinel is None:
        return redis.Redis.from_url(
            settings.redis_url, health_check_interval=30, retry=retry, **timeouts
        )
    sentinels = _Sentinel(
        list(sentinel.sentinels),
        # One quick retry per sentinel: discovering the primary already tries each of
        # them, and redis-py's default backoff would make that take 17 s when none answers.
        sentinel_kwargs={**timeouts, "password": sentinel.sentinel_password, "retry": _retry(1)},
        db=sentinel.db,
        username=sentinel.username,
        password=sentinel.password,
        health_check_interval=30,
        retry=retry,
        **timeouts,
    )
    return cast(redis.Redis, sentinels.master_for(sentinel.master))


def eviction_policy() -> str:
    """Redis's ``maxmemory-policy``: anything but ``noeviction`` may drop records."""
    return str(get_redis().info("memory").get("maxmemory_policy", "unknown"))


#: The errors that say Redis could not be reached or did not answer in time.
UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
)


def unavailable(error: BaseException) -> bool:
    """Whether ``error`` says Redis could not be reached or did not answer in time."""
    return isinstance(error, UNAVAILABLE)


def persist(write: Callable[[], T], seconds: float, what: str) -> T:
    """``write``, tried again while Redis cannot be reached, for up to ``seconds``.

    Only for writes that are safe to repeat: a write whose answer was lost may
    have happened. Any other error, or the last one, is raised.
    """
    deadline, pause = time.monotonic() + seconds, 0.1
    while True:
        try:
            return write()
        except Exception as error:
            if not unavailable(error) or time.monotonic() + pause > deadline:
                raise
            logger.warning("%s: Redis unavailable (%s); trying again", what, error)
            time.sleep(pause * random.uniform(0.5, 1.0))
            pause = min(pause * 2, 2.0)


def zrange_ids(
    client: redis.Redis | redis.client.Pipeline,
    key: str,
    start: Any,
    stop: Any,
    *,
    byscore: bool = False,
    bylex: bool = False,
    desc: bool = False,
    limit: int | None = None,
) -> list[str]:
    members = cast(
        list[bytes],
        client.zrange(
            key,
            start,
            stop,
            byscore=byscore,
            bylex=bylex,
            desc=desc,
            offset=0 if limit is not None else None,
            num=limit,
        ),
    )
    return [member.decode() for member in members]


def transaction(client: redis.Redis, body: Callable[[redis.client.Pipeline], T], *watch: str) -> T:
    """Optimistic transaction on the watched keys; ``body`` is rerun if one changed meanwhile."""
    return cast(T, client.transaction(body, *watch, value_from_callable=True))  # type: ignore[arg-type]
