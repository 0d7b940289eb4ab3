"""Delivery task messages: built once per batch, published in one command.

A message is Celery's protocol 2 for ``deliver(delivery_id, cycle=cycle)`` with
``retries`` in its header (:class:`~webhooks.models.Run`): the delivery id is also
the task id and the ``webhook-id``. Celery's ``send_task`` routes, builds and
publishes each message on its own; profiled (cProfile, ``deliver_many`` of 5,000
events), that was 62 % of the bulk path. Here Celery's ``as_task_v2`` builds the
headers once per batch, each run's message is that with its own ids, and on a
Redis broker the whole batch goes to the queue's list in one LPUSH.

The Redis envelope (:func:`encode`) is written here, field for field as kombu's
Redis transport writes it; ``tests/test_messages.py`` compares the two. Skipped
compared with ``send_task``: the ``before_task_publish`` and
``after_task_publish`` signals, and kombu's publish retries (a failed batch is
reported to the caller, which undoes it). On RabbitMQ the batch's messages are
built the same way and published on the channel, sent together and confirmed
together with confirms on (.rabbitmq); ``tests/test_brokers.py`` compares them
with ``send_task``'s. A message with an ETA on RabbitMQ (Celery routes it to its
native delay exchanges), a route that names an exchange of its own, or another
broker goes through ``send_task``, in a kombu batch.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import amqp
from amqp.exceptions import ChannelError
from celery import Celery
from kombu import Queue
from kombu.transport import redis as kombu_redis

from .. import tracing
from ..models import Run
from ..settings import SentinelURL
from . import rabbitmq
from .app import DELIVER

__all__ = [
    "Contexts",
    "Taken",
    "amqp_route",
    "encode",
    "publish",
    "queue_for",
    "store_list",
    "taking",
    "waiting",
]

logger = logging.getLogger(__name__)

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "sentinel://")


def queue_for(app: Celery, queue: str | None) -> Queue | None:
    """The kombu Queue Celery's router picks for a delivery message, or None if the
    route is not a plain direct queue (then only ``send_task`` knows what to do)."""
    options = app.amqp.router.route({"queue": queue} if queue else {}, DELIVER)
    chosen = options.get("queue") or app.amqp.default_queue
    if isinstance(chosen, str):
        chosen = app.amqp.queues[chosen]
    if chosen.exchange.type != "direct" or options.get("exchange"):
        return None
    return chosen


def store_list(app: Celery, queue: str | None, store_url: str) -> tuple[str, str] | None:
    """(queue name, list key) where a delivery message goes, when that list lives in the
    delivery store's own Redis (the broker URL is the store's): then a record and its
    message can be written in one transaction. None otherwise."""
    broker = app.conf.broker_url
    if store_url.startswith("sentinel://"):  # as config.py hands it to kombu
        store_url = SentinelURL.parse(store_url).kombu_url()
    if not isinstance(broker, str) or broker != store_url or not broker.startswith(_REDIS_SCHEMES):
        return None
    target = queue_for(app, queue)
    if target is None:
        return None
    prefix = (app.conf.broker_transport_options or {}).get("global_keyprefix", "")
    return target.name, f"{prefix}{target.name}"


#: Each run's trace context, by delivery id (see :func:`webhooks.tracing.carrier`).
Contexts = Mapping[str, Mapping[str, str]]


def _parts(
    app: Celery,
    runs: Sequence[Run],
    eta: datetime | None,
    contexts: Contexts | None,
) -> Iterator[tuple[bytes, dict[str, Any], dict[str, Any]]]:
    """Each run's message as Celery's ``send_task`` builds it: body (JSON), headers and
    properties, from headers Celery builds once for the batch."""
    current, contexts = tracing.carrier(), contexts or {}
    template_id = "template"
    headers, properties, (_, _, embed), _ = app.amqp.as_task_v2(
        template_id,
        DELIVER,
        (template_id,),
        {"cycle": 0},
        eta=eta,
        reply_to=app.thread_oid,
        ignore_result=True,
    )
    for run in runs:
        args, kwargs = (run.delivery_id,), {"cycle": run.cycle}
        yield (
            json.dumps([list(args), kwargs, embed]).encode(),
            {
                **headers,
                "id": run.delivery_id,
                "root_id": run.delivery_id,
                "retries": run.retries,
                "argsrepr": repr(args),
                "kwargsrepr": repr(kwargs),
                **(contexts.get(run.delivery_id) or current),
            },
            {**properties, "correlation_id": run.delivery_id},
        )


def encode(
    app: Celery,
    runs: Sequence[Run],
    queue: str,
    eta: datetime | None = None,
    contexts: Contexts | None = None,
) -> list[str]:
    """Each run's message to ``queue``, as kombu's Redis transport keeps it (JSON text)."""
    route = {"exchange": "", "routing_key": queue}  # the anonymous exchange, as Celery's
    return [
        json.dumps(
            {
                "body": base64.b64encode(body).decode(),
                "content-encoding": "utf-8",
                "content-type": "application/json",
                "headers": headers,
                "properties": {
                    **properties,
                    "delivery_mode": 2,
                    "delivery_info": route,
                    "priority": 0,
                    "body_encoding": "base64",
                    "delivery_tag": str(uuid.uuid4()),
                },
            }
        )
        for body, headers, properties in _parts(app, runs, eta, contexts)
    ]


def amqp_route(app: Celery, queue: str | None) -> tuple[Queue, str, str] | None:
    """(queue, exchange, routing key) where Celery's ``send_task`` publishes a delivery
    message on AMQP, or None if the route names anything else (an exchange of its own)."""
    options = app.amqp.router.route({"queue": queue} if queue else {}, DELIVER)
    chosen = options.get("queue") or app.amqp.default_queue
    if isinstance(chosen, str):
        chosen = app.amqp.queues[chosen]
    if options.get("exchange") or options.get("routing_key"):
        return None
    if chosen.exchange.type == "direct":
        return chosen, "", chosen.name  # the anonymous exchange, as Celery's
    exchange = chosen.exchange.name or app.amqp.default_exchange.name
    return chosen, exchange, chosen.routing_key or app.conf.task_default_routing_key


def _publish_amqp(
    app: Celery,
    producer: Any,
    channel: rabbitmq.Channel,
    route: tuple[Queue, str, str],
    runs: Sequence[Run],
    contexts: Contexts | None,
) -> None:
    """Publish the runs' messages, built once for the batch, as ``send_task`` would;
    with confirms on, sent together and confirmed together (:mod:`.rabbitmq`)."""
    target, exchange, routing_key = route
    producer.maybe_declare(target)
    # As Celery picks it (persistent unless configured otherwise), in AMQP's numbers.
    named: Any = target.exchange.delivery_mode or app.conf.task_default_delivery_mode
    mode = {"transient": 1, "persistent": 2}.get(named, named)
    held = [
        (
            amqp.Message(
                body,
                content_type="application/json",
                content_encoding="utf-8",
                application_headers=headers,
                delivery_mode=mode,
                priority=0,
                **properties,
            ),
            {"exchange": exchange, "routing_key": routing_key},
        )
        for body, headers, properties in _parts(app, runs, None, contexts)
    ]
    if channel.supports_batch_publish:
        channel.publish_confirmed(held)
        return
    for message, route_to in held:  # no confirms: py-amqp does not wait
        channel.basic_publish(message, **route_to)


def publish(
    app: Celery,
    runs: Sequence[Run],
    queue: str | None = None,
    eta: datetime | None = None,
    contexts: Contexts | None = None,
) -> None:
    """Publish one message per run, in order, or raise.

    On a Redis broker the batch is one LPUSH: all of it or none. Elsewhere each
    message goes through ``send_task``, in one kombu batch; on RabbitMQ the call
    returns once every message is confirmed, and raises if any was refused or the
    connection was lost (:mod:`.rabbitmq`).
    """
    if not runs:
        return
    target = queue_for(app, queue)
    with app.producer_or_acquire() as producer:
        channel = producer.channel
        if target is not None and isinstance(channel, kombu_redis.Channel):
            producer.maybe_declare(target)
            messages = encode(app, runs, target.name, eta, contexts)
            with channel.conn_or_acquire() as client:
                # LPUSH adds at the head and consumers pop the tail: first in, first out.
                client.lpush(target.name, *messages)
            return
        # On RabbitMQ, a message with an ETA goes through send_task, which routes it
        # to Celery's native delay exchanges.
        route = amqp_route(app, queue) if isinstance(channel, rabbitmq.Channel) else None
        if route is not None and eta is None:
            _publish_amqp(app, producer, channel, route, runs, contexts)
            return
        routing: dict[str, Any] = {"queue": queue} if queue else {}
        current, contexts = tracing.carrier(), contexts or {}
        with producer.batch(max_size=2 * len(runs) + 1):
            for run in runs:
                app.send_task(
                    DELIVER,
                    args=(run.delivery_id,),
                    kwargs={"cycle": run.cycle},
                    task_id=run.delivery_id,
                    retries=run.retries,
                    eta=eta,
                    producer=producer,
                    ignore_result=True,
                    add_to_parent=False,
                    headers=dict(contexts.get(run.delivery_id) or current),
                    **routing,
                )


def waiting(app: Celery) -> int:
    """Messages waiting in the broker, over every queue the app knows: the default one and
    any configured (``task_queues``). Not counted: messages a worker has taken and not
    acknowledged yet (prefetched, or held for a short retry)."""
    names = sorted({*app.amqp.queues, app.conf.task_default_queue})
    total = 0
    with app.connection_for_read() as connection:
        for name in names:
            # A channel per queue: on AMQP, asking for a queue that does not exist
            # closes the channel it was asked on.
            with connection.channel() as channel:
                declare = getattr(channel, "queue_declare")  # noqa: B009  (StdChannel's stub omits it)
                try:
                    total += declare(queue=name, passive=True).message_count
                except ChannelError as error:
                    # NOT_FOUND (AMQP's, and kombu's Redis channel's, as a string):
                    # a queue never declared has nothing waiting.
                    if str(error.reply_code) != "404":
                        raise
    return total


def _settled(requeue: bool) -> None:
    """Nothing to tell the broker (a message parsed here, not taken yet)."""


@dataclass(frozen=True)
class Taken:
    """A delivery message a pool process took off its queue itself (:func:`taking`)."""

    run: Run
    #: Its trace context (:data:`webhooks.tracing.HEADERS`).
    trace: Mapping[str, str] = field(default_factory=dict)
    #: When it is due, for a retry's message sent with an ETA; None: now.
    eta: datetime | None = None
    #: Called once its run is over, or it is not run: ``settle(False)`` acknowledges it
    #: (RabbitMQ; a message taken off a Redis list is gone from it), ``settle(True)``
    #: hands it back to the queue.
    settle: Callable[[bool], None] = _settled
    #: The message as it was taken off a Redis list, and that list's key (None: taken
    #: from RabbitMQ): what a run that must wait at its destination keeps, to be pushed
    #: back as a slot frees.
    message: tuple[bytes, str] | None = None


def _taken(headers: Mapping[str, Any], body: bytes, content_type: str | None) -> Taken | None:
    """The run of a message with these headers and body, or None if it is not a
    ``deliver`` message of the form this package publishes."""
    try:
        if headers.get("task") != DELIVER or content_type != "application/json":
            return None
        (delivery_id, *_), kwargs, _embed = json.loads(body)
        run = Run(str(delivery_id), int(kwargs.get("cycle", 0)), int(headers.get("retries") or 0))
        eta = datetime.fromisoformat(headers["eta"]) if headers.get("eta") else None
    except (ValueError, KeyError, TypeError):
        return None
    trace = {name: headers[name] for name in tracing.HEADERS if isinstance(headers.get(name), str)}
    return Taken(run, trace, eta)


#: Most messages a pool process takes off a Redis queue in one call, and the share of
#: what waits that it takes (a quarter): one call per run cost a round trip a delivery.
TAKE_AT_ONCE, TAKE_SHARE = 8, 4


class _RedisTaker:
    """Takes a Redis queue's messages a few at a time, hands them out one by one, and
    gives back what it holds at the end (:meth:`give_back`).

    Each take is one round trip of ``RPOP key count`` and ``LLEN key``: the count is
    a share of what waited after the take before (one, the first time), so that a
    short queue is not emptied into one process while others idle. Not a script:
    the messages a script pops become Lua strings, which Redis's Lua hashes byte by
    byte (``python -m bench.instructions``: a take of four cost Redis 110,000
    instructions as a script)."""

    def __init__(self, client: Any, key: str) -> None:
        self._client, self._key = client, key
        self._held: deque[bytes] = deque()
        self._count = 1

    def __call__(self) -> Taken | None:
        if not self._held:
            with self._client.pipeline(transaction=False) as pipe:
                pipe.rpop(self._key, self._count)
                pipe.llen(self._key)
                taken, left = pipe.execute()
            self._held.extend(taken or ())
            self._count = max(1, min(TAKE_AT_ONCE, left // TAKE_SHARE))
        if not self._held:
            return None
        raw = self._held.popleft()
        try:
            envelope = json.loads(raw)
            taken = _taken(
                envelope["headers"], base64.b64decode(envelope["body"]), envelope["content-type"]
            )
        except (ValueError, KeyError, TypeError):
            taken = None
        if taken is None:
            # Not a run of ours: back at the tail, the next one fetched, for the worker.
            self._held.appendleft(raw)
            self.give_back()
            return None
        return Taken(
            taken.run, taken.trace, taken.eta, partial(self._settle, raw), (raw, self._key)
        )

    def _settle(self, raw: bytes, requeue: bool) -> None:
        if requeue:
            self._client.rpush(self._key, raw)

    def give_back(self) -> None:
        """Put the messages taken and not handed out back where they were, in order."""
        if self._held:
            held, self._held = list(self._held), deque()
            self._client.rpush(self._key, *reversed(held))


def _take_amqp(channel: rabbitmq.Channel, name: str) -> Taken | None:
    message = channel.basic_get(queue=name, no_ack=False)
    if message is None:
        return None
    tag = message.delivery_tag
    taken = _taken(message.headers or {}, message.body, message.content_type)

    def settle(requeue: bool) -> None:
        # py-amqp's own, written at once: no event loop runs in a pool process to
        # write the acknowledgements the worker's channel holds (rabbitmq.py).
        if requeue:
            amqp.Channel.basic_reject(channel, tag, requeue=True)
        else:
            amqp.Channel.basic_ack(channel, tag)

    if taken is None:
        settle(True)
        return None
    return Taken(taken.run, taken.trace, taken.eta, settle)


def _nothing() -> Taken | None:
    return None


@contextmanager
def taking(app: Celery, queue: str | None) -> Iterator[Callable[[], Taken | None]]:
    """For as long as the block runs, a way to take the next delivery message off
    ``queue`` (the default one if None), as the worker's own fetch would: it returns
    None when the queue is empty, on a broker this cannot take from, or when the next
    message is anything but a ``deliver`` run (handed back, for the worker to fetch).
    The producer's channel and the queue's name are resolved once, not per message.

    On Redis without kombu's ack emulation (the configuration here) a message the
    worker fetched is in its memory alone; one taken here is in this process's alone,
    with the same guard: its attempt's claim, and the backstop for what was never
    claimed. On RabbitMQ it is unacknowledged until :attr:`Taken.settle`: should this
    process die first, RabbitMQ hands it out again.
    """
    with app.producer_or_acquire() as producer:
        channel = producer.channel
        take: Callable[[], Taken | None] = _nothing
        if isinstance(channel, kombu_redis.Channel):
            options = app.conf.broker_transport_options or {}
            target = queue_for(app, queue)
            # With the emulation on, kombu would hand it out again: it never saw it taken.
            if target is not None and not options.get("ack_emulation", True):
                key = f"{options.get('global_keyprefix', '')}{target.name}"
                with channel.conn_or_acquire() as client:
                    taker = _RedisTaker(client, key)
                    try:
                        yield taker
                    finally:
                        try:
                            taker.give_back()
                        except Exception as error:  # Redis went away: the backstop finds them
                            logger.warning("could not give back messages taken: %s", error)
                    return
        elif isinstance(channel, rabbitmq.Channel):
            route = amqp_route(app, queue)
            if route is not None:
                take = partial(_take_amqp, channel, route[0].name)
        yield take
