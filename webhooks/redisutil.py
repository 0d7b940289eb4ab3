"""Typed wrappers for the two redis-py calls whose return types are too loose for mypy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import redis

__all__ = ["transaction", "zrange_ids"]

T = TypeVar("T")


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
