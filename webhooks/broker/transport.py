"""kombu's Redis transport, minus a redis-py client built for every message, and
surviving the loss of its connection.

kombu 5.7's Redis channel calls ``_create_client()`` each time it records a
delivered message in its unacked index and again when the message is acked.
Each call builds a new ``redis.Redis``, whose constructor fills a table of some
200 response callbacks: measured with py-spy on a worker running a no-op task,
that was 19 % of the worker's CPU, and caching the client took a no-op task
from 1.43 to 0.95 ms of worker CPU (solo pool, 5,000 tasks, /proc CPU times).
The client is stateless apart from its connection pool, so one per channel and
pool is enough.

A closed connection forgets its settings, yet kombu goes on building pools from
them: at close, to put unacknowledged messages back, and for the acks of tasks
that finish after the worker reconnected. It then raises ``AttributeError:
'NoneType' object has no attribute 'hostname'``, which stops the worker (the
same failure as kombu #582, reproduced with kombu 5.7.0 by killing Redis under a
busy worker; docs/upstream.md has the report). The channel here keeps the
settings it was opened with, so those calls reach Redis: a late ack removes its
message from the unacked index (no redelivery later), and a Redis that is down
answers with a connection error, which kombu handles. Deleting an auto-delete
queue while the channel closes (the gossip step's) is skipped when Redis cannot
be reached: otherwise the error cut the close short, leaving its pools open
(kombu's binding expiry sweeps the stale binding).

The Sentinel transport gets the same channel. Its pools come from the
sentinels named by the connection, which a closed connection has forgotten too,
so the channel keeps those as well (``_sentinel_managed_pool``).

Without ack emulation (config.py turns it off), a message a worker took lives
only in the worker until it is acknowledged, and kombu hands the ones not
acknowledged back to the queue when the channel closes: at a warm shutdown, and
when the connection is lost. In the second case Redis is usually gone too, and
kombu then logs them as lost and dumps them to a file. :class:`QoS` keeps them
instead, and the next channel of the process that reaches Redis (the consumer's,
once it reconnected) hands them back: the deliveries are not left for the
backstop, which would find them only 2 x ``WEBHOOKS_RECOVERY_SECONDS`` late.

Selected by ``broker_transport`` in config.py; everything else is kombu's.
``_create_client``, ``_connparams``, ``_delete``, ``_closing`` and
``_sentinel_managed_pool`` are private to kombu: :mod:`.internals` checks at
worker start that they are still there.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import redis
import redis.sentinel
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.url import url_to_parts

__all__ = ["Channel", "QoS", "SentinelChannel", "SentinelTransport", "Transport"]

logger = logging.getLogger(__name__)

# Messages taken and not acknowledged that could not be handed back when their
# connection was lost; the process's next channel to reach Redis hands them back.
_not_handed_back: list[Any] = []
_not_handed_back_lock = threading.Lock()
# A pool process forked meanwhile is not the one that took them.
os.register_at_fork(after_in_child=_not_handed_back.clear)


# kombu's type stubs leave out the private methods used here.
_RedisChannel: Any = kombu_redis.Channel
_RedisTransport: Any = kombu_redis.Transport
_SentinelChannel: Any = kombu_redis.SentinelChannel
_SentinelTransport: Any = kombu_redis.SentinelTransport
# Their stubs say restore_unacked returns None; it returns what it could not restore.
_VirtualQoS: Any = virtual.QoS


class QoS(_VirtualQoS):  # type: ignore[misc]
    """kombu's QoS without ack emulation, keeping what it could not hand back because
    Redis could not be reached, instead of dumping it to a file."""

    def restore_unacked(self) -> list[tuple[BaseException, Any]]:
        failed = super().restore_unacked()
        lost = self.channel.connection_errors
        unreachable = [message for error, message in failed if isinstance(error, lost)]
        if unreachable:
            with _not_handed_back_lock:
                _not_handed_back.extend(unreachable)
            logger.warning(
                "the broker cannot be reached: %d messages taken and not acknowledged go "
                "back to the queue when it can",
                len(unreachable),
            )
        kept = {id(message) for message in unreachable}
        return [(error, message) for error, message in failed if id(message) not in kept]


class Channel(_RedisChannel):  # type: ignore[misc]
    """kombu's Redis channel, holding one synchronous client per connection pool, and
    without ack emulation handing back what an earlier channel could not."""

    _client_for_pool: Any = None
    _sync_params: dict[str, Any] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # connects, or raises
        if not self.ack_emulation:
            self.QoS = QoS
            self._hand_back()

    def _hand_back(self) -> None:
        with _not_handed_back_lock:
            waiting = list(_not_handed_back)
            _not_handed_back.clear()
        for number, message in enumerate(waiting):
            try:
                self._restore(message)
            except self.connection_errors:
                with _not_handed_back_lock:
                    _not_handed_back.extend(waiting[number:])
                return
        if waiting:
            logger.warning(
                "the broker is back: %d messages taken and not acknowledged were put back "
                "on the queue",
                len(waiting),
            )

    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:  # the connection was closed
            if asynchronous or self._sync_params is None:
                raise redis.exceptions.ConnectionError("the broker connection is closed")
            return dict(self._sync_params)
        params = super()._connparams(asynchronous=asynchronous)
        if not asynchronous:
            self._sync_params = dict(params)
        return params

    def _delete(self, *args: Any, **kwargs: Any) -> None:
        try:
            super()._delete(*args, **kwargs)
        except self.connection_errors:
            if not self._closing:
                raise

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


class SentinelChannel(Channel, _SentinelChannel):  # type: ignore[misc]
    """kombu's Sentinel channel with :class:`Channel`'s fixes, and the sentinels kept."""

    _sentinel_urls: list[str] | None = None

    def _sentinel_managed_pool(self, asynchronous: bool = False) -> Any:
        client = self.connection.client
        if client is not None:
            self._sentinel_urls = list(client.alt)
            return super()._sentinel_managed_pool(asynchronous)
        if asynchronous or self._sentinel_urls is None:
            raise redis.exceptions.ConnectionError("the broker connection is closed")
        # kombu's own steps, from what the open connection said.
        params = self._connparams()
        credentials = {name: params[name] for name in ("username", "password") if name in params}
        params.pop("host", None)
        params.pop("port", None)
        addresses = []
        for url in self._sentinel_urls:
            parts = url_to_parts(url)
            # kombu reads a URL without a host as localhost's, as here.
            addresses.append(
                (parts.hostname or "localhost", parts.port or _SentinelTransport.default_port)
            )
        manager: Any = redis.sentinel.Sentinel(
            addresses,
            min_other_sentinels=getattr(self, "min_other_sentinels", 0),
            sentinel_kwargs=getattr(self, "sentinel_kwargs", None),
            **params,
        )
        self._sentinel_manager = manager  # closed with the channel's pools
        return manager.master_for(self.master_name, redis.Redis, **credentials).connection_pool


class SentinelTransport(_SentinelTransport):  # type: ignore[misc]
    """kombu's Sentinel transport with :class:`SentinelChannel`."""

    Channel = SentinelChannel
