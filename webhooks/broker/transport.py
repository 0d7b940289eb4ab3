"""kombu's Redis transport, minus a redis-py client built for every message.

kombu 5.7's Redis channel calls ``_create_client()`` each time it records a
delivered message in its unacked index and again when the message is acked.
Each call builds a new ``redis.Redis``, whose constructor fills a table of some
200 response callbacks: measured with py-spy on a worker running a no-op task,
that was 19 % of the worker's CPU, and caching the client took a no-op task
from 1.43 to 0.95 ms of worker CPU (solo pool, 5,000 tasks, /proc CPU times).
The client is stateless apart from its connection pool, so one per channel and
pool is enough.

Selected by ``broker_transport`` in config.py; everything else is kombu's.
``_create_client`` is private to kombu: :mod:`.internals` checks at worker start
that it is still there.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

__all__ = ["Channel", "Transport"]


# kombu's type stubs leave out the private methods used here.
_RedisChannel: Any = kombu_redis.Channel
_RedisTransport: Any = kombu_redis.Transport


class Channel(_RedisChannel):  # type: ignore[misc]
    """kombu's Redis channel, holding one synchronous client per connection pool."""

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


class Transport(_RedisTransport):  # type: ignore[misc]
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel
