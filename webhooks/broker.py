"""kombu's Redis transport, minus a redis-py client built for every message, plus a
bulk publish.

kombu 5.7's Redis channel calls ``_create_client()`` each time it records a
delivered message in its unacked index and again when the message is acked.
Each call builds a new ``redis.Redis``, whose constructor fills a table of some
200 response callbacks: measured with py-spy on a worker running a no-op task,
that was 19 % of the worker's CPU, and caching the client took a no-op task
from 1.43 to 0.95 ms of worker CPU (solo pool, 5,000 tasks, /proc CPU times).
The client is stateless apart from its connection pool, so one per channel and
pool is enough.

``encode`` and ``push`` split what ``basic_publish`` does for a message to the
anonymous exchange (how Celery routes to a direct queue), so that the bulk
delivery path (webhooks/bulk.py) can push many messages in one LPUSH.

Selected by ``broker_transport`` in celeryconfig.py; everything else is kombu's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps

__all__ = ["Channel", "Transport"]


# kombu's type stubs leave out the private methods used here.
_RedisChannel: Any = kombu_redis.Channel
_RedisTransport: Any = kombu_redis.Transport


class Channel(_RedisChannel):  # type: ignore[misc]
    _client_for_pool: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            # The BRPOP/LISTEN client keeps per-command state: kombu caches it itself.
            return super()._create_client(asynchronous=True)
        client = self._client_for_pool
        # A new pool (after a reconnect) gets a new client.
        if client is None or client.connection_pool is not self.pool:
            client = self._client_for_pool = super()._create_client()
        return client

    def encode(self, queue: str, message: dict[str, Any]) -> tuple[str, str]:
        """What ``basic_publish`` to the anonymous exchange would push: (list key, JSON)."""
        self._inplace_augment_message(message, "", queue)
        key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        return key, dumps(message)

    def push(self, key: str, encoded: Sequence[str]) -> None:
        """Push encoded messages to one queue's list in one command: in order, all or none."""
        # LPUSH adds at the head and consumers pop the tail: first in, first out.
        self._create_client().lpush(key, *encoded)


class Transport(_RedisTransport):  # type: ignore[misc]
    Channel = Channel
