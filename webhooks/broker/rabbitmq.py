"""kombu's py-amqp transport, with a batch's publisher confirms awaited together.

With confirms on (config.py turns them on with the quorum queues), py-amqp waits
for RabbitMQ's ``basic.ack`` after every ``basic.publish``: one round trip per
message, and RabbitMQ writes a quorum queue's messages to its log in batches, so
each wait also waits for that write. ``deliver_many`` of 3,000 took 3.5-4.1 s
here (about 800 messages/s), and the worker's promoter, which publishes the runs
a busy destination set aside, spent 40 % of the main process's samples waiting
in it (py-spy).

kombu's ``Producer.batch()`` lets a transport defer the publishes it is given
until the batch is flushed; only the Redis transport does. The channel here
does it for AMQP: a batch keeps its messages, and at the flush sends them all,
then waits until RabbitMQ has confirmed every one (``basic.ack``, often with
``multiple`` set, for many at once). The flush returns only when each message
of the batch is confirmed; a ``basic.nack`` for any of them raises
:class:`~amqp.exceptions.MessageNacked`, and a lost connection raises the
connection's error, both from the flush, so from ``Producer.batch()``'s exit:
the caller learns that the batch did not all go out, and undoes what it was for
(producer.py), as it does when a Redis LPUSH fails. A batch left by an
exception sends nothing it still held. Publishes outside a batch (Celery's
``self.retry``, ``send_task``) keep py-amqp's own wait, one message at a time.

A silent broker (a stalled node, a network partition that drops nothing and
answers nothing) would keep py-amqp waiting for its confirms for ever: every wait
for a confirm here, a batch's and py-amqp's own one at a time, ends after the
connection's ``confirm_timeout`` (``WEBHOOKS_BROKER_CONFIRM_TIMEOUT_SECONDS``,
given as a transport option by config.py) with :class:`ConfirmTimeout`, which names
the broker; the producer undoes what the batch was for and raises EnqueueFailed,
the worker's retry publish fails and Celery's publish retries take over. The
connection is dropped then, its state unknown: the next publish opens another.

Acknowledgements, in a worker: Celery acknowledges each message after its task
(acks late), and py-amqp writes each ``basic.ack`` to the socket on its own: a
system call and a TCP segment per message, which on loopback also runs
RabbitMQ's receive path in the caller, and RabbitMQ handles each segment apart.
py-spy put 16 % of the worker main process's samples there. The channel here
holds the acknowledgements the event loop makes in one pass and writes them in
one ``write`` at the start of its next pass (before it polls again), as the
same frames. One without a running event loop (a producer, a test's consumer),
or with ``multiple``, is written at once, as py-amqp's. A connection lost before
the write loses them, as it loses any acknowledgement not yet sent: RabbitMQ
hands those messages out again, and their attempts' claims make them no-ops.

Delivery tags: in confirm mode RabbitMQ numbers a channel's messages 1, 2, 3...
from its ``confirm.select``, and its acks and nacks name them. py-amqp does not
count them, so the channel here counts every publish it sends (its own and
py-amqp's confirmed ones alike): a batch's tags are the next ones.

Selected by ``broker_transport`` in config.py for an ``amqp://`` or ``amqps://``
broker; everything else is kombu's and py-amqp's. ``Channel._basic_publish``,
``_on_basic_ack`` and ``_on_basic_nack`` are private to py-amqp: :mod:`.internals`
checks at worker start that they are still there. So is ``_confirm_selected``, the
flag py-amqp sets on a channel in confirm mode; tests/test_brokers.py covers it.
"""

from __future__ import annotations

import struct
import time
from contextlib import suppress
from typing import Any

from amqp import spec
from amqp.exceptions import MessageNacked
from amqp.serialization import dumps
from kombu.asynchronous import get_event_loop
from kombu.transport import pyamqp

__all__ = [
    "Channel",
    "ConfirmTimeout",
    "ConfirmedBatch",
    "Connection",
    "SSLTransport",
    "Transport",
]

# kombu's stubs leave out the private methods used here.
_Channel: Any = pyamqp.Channel
_Connection: Any = pyamqp.Connection
_Transport: Any = pyamqp.Transport
_SSLTransport: Any = pyamqp.SSLTransport


class ConfirmTimeout(TimeoutError):
    """RabbitMQ did not confirm published messages within the connection's
    ``confirm_timeout``: whether it took them is unknown."""


class ConfirmedBatch:
    """A batch of publishes on one channel, sent and confirmed together at each flush
    (kombu's ``create_publish_batch`` interface: ``publish``, ``flush``, ``discard``,
    ``close``). At most ``max_size`` messages wait in it: one more flushes first."""

    def __init__(self, channel: Channel, max_size: int) -> None:
        self.channel = channel
        self.max_size = max_size
        self._held: list[tuple[Any, dict[str, Any]]] = []

    def publish(self, message: Any, **kwargs: Any) -> None:
        if len(self._held) >= self.max_size:
            self.flush()
        self._held.append((message, kwargs))

    def flush(self) -> None:
        held, self._held = self._held, []
        if held:
            self.channel.publish_confirmed(held)

    def discard(self) -> None:
        self._held.clear()

    def close(self) -> None:
        self._held.clear()


class Channel(_Channel):  # type: ignore[misc]
    """kombu's AMQP channel, which counts its messages' delivery tags and publishes a
    batch with its confirms awaited together (:class:`ConfirmedBatch`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Set before py-amqp's __init__, which opens the channel.
        self._last_tag = 0  # the delivery tag of the last message sent in confirm mode
        self._unconfirmed: set[int] = set()  # the flushing batch's, not confirmed yet
        self._lowest = 1  # no tag below it is in _unconfirmed
        self._nacked = 0  # how many of the flushing batch's RabbitMQ refused
        self._acks: list[int] = []  # delivery tags acknowledged, not written yet
        super().__init__(*args, **kwargs)

    @property
    def supports_batch_publish(self) -> bool:
        # Without confirms, py-amqp does not wait: nothing to gain.
        return bool(self.connection and self.connection.confirm_publish)

    def create_publish_batch(self, max_size: int) -> ConfirmedBatch:
        return ConfirmedBatch(self, max_size)

    def confirm_select(self, nowait: bool = False) -> Any:
        # RabbitMQ numbers the channel's messages from here (a revived channel anew).
        self._last_tag = 0
        return super().confirm_select(nowait)

    _confirm_selected: bool  # py-amqp's: the channel is in confirm mode

    def _basic_publish(self, *args: Any, **kwargs: Any) -> Any:
        sent = super()._basic_publish(*args, **kwargs)
        if self._confirm_selected:
            self._last_tag += 1
        return sent

    def publish_confirmed(self, held: list[tuple[Any, dict[str, Any]]]) -> None:
        """Send every (message, publish arguments) in ``held``, then return once RabbitMQ
        has confirmed them all; raise :class:`~amqp.exceptions.MessageNacked` if it
        refused any, or the connection's error if it was lost meanwhile."""
        if not self._confirm_selected:
            self._confirm_selected = True
            self.confirm_select()
        first = self._last_tag + 1
        # Awaited before the first is sent: py-amqp reads what has arrived while it
        # publishes (to learn whether RabbitMQ blocked the connection), acks included.
        self._unconfirmed, self._lowest = set(range(first, first + len(held))), first
        self._nacked = 0
        # The caller's timeout, else the connection's, bounds the wait for the batch.
        timeout = self.connection.confirm_timeout
        try:
            for message, kwargs in held:
                timeout = kwargs.pop("confirm_timeout", None) or kwargs.get("timeout") or timeout
                self._basic_publish(message, **kwargs)
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._unconfirmed:
                left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
                try:
                    self.wait([spec.Basic.Ack, spec.Basic.Nack], timeout=left)
                except TimeoutError as error:
                    raise self._silent(len(self._unconfirmed), len(held), timeout) from error
        finally:
            self._unconfirmed, nacked = set(), self._nacked
        if nacked:
            raise MessageNacked(f"RabbitMQ refused {nacked} of {len(held)} messages")

    def basic_publish_confirm(self, *args: Any, **kwargs: Any) -> Any:
        # py-amqp's publish of one message in confirm mode (send_task, Celery's retry),
        # its wait for the confirm bounded as a batch's is.
        timeout = kwargs.get("confirm_timeout") or self.connection.confirm_timeout
        kwargs["confirm_timeout"] = timeout
        try:
            return super().basic_publish_confirm(*args, **kwargs)
        except TimeoutError as error:
            raise self._silent(1, 1, timeout) from error

    def _silent(self, unconfirmed: int, sent: int, timeout: float | None) -> ConfirmTimeout:
        """The error for a wait for confirms that timed out, once the connection is
        dropped: closing it politely would wait for the silent broker's answer too
        (for ever: kombu's pool closes a producer's connection after an error)."""
        connection = self.connection
        error = ConfirmTimeout(
            f"RabbitMQ at {connection.host} confirmed {sent - unconfirmed} of {sent} "
            f"messages within {timeout or 0:g} s (WEBHOOKS_BROKER_CONFIRM_TIMEOUT_SECONDS); "
            "whether it took the others is unknown"
        )
        connection.collect()
        return error

    def basic_ack(self, delivery_tag: int, multiple: bool = False, argsig: str = "Lb") -> Any:
        hub = get_event_loop()
        if multiple or hub is None:
            self.write_acks()
            return super().basic_ack(delivery_tag, multiple, argsig)
        if not self._acks:
            hub.call_soon(self.write_acks)
        self._acks.append(delivery_tag)
        return None

    def write_acks(self) -> None:
        """Write the acknowledgements held, in one write: each a ``basic.ack`` method
        frame, as py-amqp writes it."""
        tags, self._acks = self._acks, []
        if not tags or self.connection is None or not self.is_open:
            return  # closed: RabbitMQ hands the messages out again
        header = struct.pack(">HH", *spec.Basic.Ack)
        frames = []
        for tag in tags:
            payload = header + dumps("Lb", (tag, False))
            frames.append(struct.pack(">BHI", 1, self.channel_id, len(payload)) + payload + b"\xce")
        self.connection.transport.write(b"".join(frames))
        self.connection.bytes_sent += 1  # as py-amqp counts them, for heartbeats

    def close(self, *args: Any, **kwargs: Any) -> Any:
        with suppress(OSError):  # lost: the close finds out, and RabbitMQ hands them out again
            self.write_acks()
        return super().close(*args, **kwargs)

    def _confirmed(self, delivery_tag: int, multiple: bool) -> int:
        """Take the tags an ack or nack names off the batch's; how many it named."""
        if not self._unconfirmed:
            return 0
        if not multiple:
            if delivery_tag in self._unconfirmed:
                self._unconfirmed.discard(delivery_tag)
                return 1
            return 0
        # Each tag is looked at once over the batch, however many acks name it.
        before = len(self._unconfirmed)
        for tag in range(self._lowest, delivery_tag + 1):
            self._unconfirmed.discard(tag)
        self._lowest = max(self._lowest, delivery_tag + 1)
        return before - len(self._unconfirmed)

    def _on_basic_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._confirmed(delivery_tag, multiple)
        super()._on_basic_ack(delivery_tag, multiple)

    def _on_basic_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked += self._confirmed(delivery_tag, multiple)
        super()._on_basic_nack(delivery_tag, multiple)


class Connection(_Connection):  # type: ignore[misc]
    """kombu's AMQP connection, with the channel above, and ``confirm_timeout``: the
    longest its channels wait for RabbitMQ's confirms (None: for ever)."""

    Channel = Channel

    def __init__(self, *args: Any, confirm_timeout: float | None = None, **kwargs: Any) -> None:
        # Set before py-amqp's __init__, which may open channels.
        self.confirm_timeout = confirm_timeout
        super().__init__(*args, **kwargs)

    def close(self, *args: Any, **kwargs: Any) -> Any:
        # The acknowledgements its channels hold go out first (a warm shutdown closes
        # the connection, not each channel): or RabbitMQ would hand those messages out
        # again.
        for channel in list((self.channels or {}).values()):
            if isinstance(channel, Channel):
                with suppress(OSError):
                    channel.write_acks()
        return super().close(*args, **kwargs)


class Transport(_Transport):  # type: ignore[misc]
    """kombu's py-amqp transport, with the connection and channel above."""

    Connection = Connection
    implements = _Transport.implements.extend(batch_publish=True)


class SSLTransport(_SSLTransport):  # type: ignore[misc]
    """kombu's py-amqp transport over TLS (``amqps://``), with the connection above."""

    Connection = Connection
    implements = Transport.implements
