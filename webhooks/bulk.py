"""Publishing many delivery messages at once: the bulk path under deliver_many,
publish() and the promoter.

Celery's ``apply_async`` routes, builds and publishes every message on its own;
profiled (cProfile, ``deliver_many`` of 5,000 events) that was 62 % of the bulk
path. Here Celery's own ``as_task_v2`` builds one message per batch, each
delivery's message is that template with its ids and arguments, and the batch
goes to Redis in one LPUSH (:meth:`webhooks.broker.Channel.put_many`). A worker
cannot tell the messages apart: ``tests/test_bulk.py`` compares them field by field.

Skipped compared with ``apply_async``: the ``before_task_publish`` and
``after_task_publish`` signals, and kombu's publish retries (a failed batch is
reported to the caller, which undoes it). Anything this path does not cover (a
broker other than plain ``redis://``, a non-direct exchange) goes through
``apply_async`` one message at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from celery import Celery
from kombu.serialization import dumps

from .broker import Channel

__all__ = ["Message", "publish_messages"]

_TEMPLATE_ID = "00000000-0000-0000-0000-000000000000"


class Message(NamedTuple):
    """One delivery task message: ``deliver(delivery_id, cycle=cycle)``, ``retries`` done."""

    delivery_id: str
    cycle: int
    retries: int = 0


def _queue(app: Celery, task_name: str, queue: str | None) -> Any:
    """The kombu Queue Celery's router picks for the task, or None if it is not direct."""
    options = app.amqp.router.route({"queue": queue} if queue else {}, task_name)
    chosen = options.get("queue") or app.amqp.default_queue
    if isinstance(chosen, str):
        chosen = app.amqp.queues[chosen]
    if chosen.exchange.type != "direct" or options.get("exchange"):
        return None
    return chosen


def publish_messages(app: Celery, task_name: str, messages: Sequence[Message],
                     queue: str | None = None, ignore_result: bool = True) -> bool:
    """Publish ``messages`` in one Redis command; False if this path does not apply."""
    if not messages:
        return True
    target = _queue(app, task_name, queue)
    if target is None:
        return False
    with app.producer_or_acquire() as producer:
        channel = producer.channel
        if not isinstance(channel, Channel):
            return False
        headers, properties, (_, _, embed), _ = app.amqp.as_task_v2(
            _TEMPLATE_ID, task_name, (_TEMPLATE_ID,), {"cycle": 0}, reply_to=app.thread_oid,
            ignore_result=ignore_result)
        prepared = []
        for message in messages:
            args, kwargs = (message.delivery_id,), {"cycle": message.cycle}
            content_type, encoding, body = dumps((args, kwargs, embed), serializer="json")
            prepared.append(channel.prepare_message(
                body.encode(encoding) if isinstance(body, str) else body,
                0, content_type, encoding,
                {**headers, "id": message.delivery_id, "root_id": message.delivery_id,
                 "retries": message.retries, "argsrepr": repr(args),
                 "kwargsrepr": repr(kwargs)},
                {**properties, "correlation_id": message.delivery_id, "delivery_mode": 2}))
        producer.maybe_declare(target)
        channel.put_many(target.name, prepared)
    return True
