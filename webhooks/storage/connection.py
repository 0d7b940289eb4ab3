"""The one Redis connection of the delivery store, and typed wrappers for redis-py.

Every store in :mod:`webhooks.storage` is handed the client from
:func:`get_redis`; nothing else builds one, and nothing reaches into a store for it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar, cast

import redis

from ..settings import get_settings

__all__ = ["get_redis", "transaction", "zrange_ids"]

T = TypeVar("T")


@lru_cache(maxsize=1)
def get_redis() -> redis.Redis:
    """The client every store shares: one connection pool per process."""
    return redis.Redis.from_url(get_settings().redis_url)


def zrange_ids(client: redis.Redis | redis.client.Pipeline, key: str, start: Any, stop: Any,
               *, byscore: bool = False, desc: bool = False, limit: int | None = None
               ) -> list[str]:
    members = cast(list[bytes], client.zrange(
        key, start, stop, byscore=byscore, desc=desc,
        offset=0 if limit is not None else None, num=limit))
    return [member.decode() for member in members]


def transaction(client: redis.Redis, body: Callable[[redis.client.Pipeline], T], *watch: str
                ) -> T:
    """Optimistic transaction on the watched keys; ``body`` is rerun if one changed meanwhile."""
    return cast(T, client.transaction(body, *watch, value_from_callable=True))  # type: ignore[arg-type]
