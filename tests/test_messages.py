"""Delivery task messages: what the one-command bulk publish writes is what Celery writes."""

from __future__ import annotations

import base64
import json
import time
from typing import TYPE_CHECKING, Any, cast

import pytest

from webhooks import app
from webhooks.broker import internals, messages
from webhooks.broker.app import DELIVER
from webhooks.models import Run

if TYPE_CHECKING:
    from kombu.transport import pyamqp

    from webhooks.broker.transport import Channel

# A queue no test worker consumes, so the messages stay where the test can read them.
QUEUE = "bulk-check"


@pytest.fixture
def queue(redis_client):
    redis_client.delete(QUEUE)
    yield QUEUE
    redis_client.delete(QUEUE)


def _popped(redis_client) -> list[dict[str, Any]]:
    """The queue's messages in the order a worker takes them (kombu pops the tail)."""
    found = []
    while (raw := redis_client.rpop(QUEUE)) is not None:
        message = json.loads(raw)
        message["body"] = json.loads(base64.b64decode(message["body"]))
        found.append(message)
    return found


def _without_ids(message: dict[str, Any], delivery_id: str) -> dict[str, Any]:
    text = json.dumps(message, sort_keys=True).replace(delivery_id, "<id>")
    result: dict[str, Any] = json.loads(text)
    result["properties"].pop("delivery_tag")  # a fresh uuid per message, either way
    return result


def test_bulk_message_is_the_message_celery_writes(redis_client, queue):
    # Celery's own send_task through kombu's own publish, beside ours.
    app.send_task(
        DELIVER,
        args=("bulk-one",),
        kwargs={"cycle": 3},
        task_id="bulk-one",
        retries=2,
        queue=queue,
        ignore_result=True,
        add_to_parent=False,
    )
    messages.publish(app, [Run("bulk-two", 3, 2)], queue=queue)
    one, two = _popped(redis_client)
    assert two["headers"]["id"] == "bulk-two" and two["body"][0] == ["bulk-two"]
    assert _without_ids(two, "bulk-two") == _without_ids(one, "bulk-one")


def test_bulk_keeps_the_order_and_each_run(redis_client, queue):
    # The third id needs escaping in JSON; the fourth holds digits that once served
    # as a stand-in in a template message.
    names = {2: 'bulk "2"', 3: "bulk-918273645501"}
    runs = [Run(names.get(n, f"bulk-{n}"), n % 2, n % 3) for n in range(5)]
    messages.publish(app, runs, queue=queue)
    popped = _popped(redis_client)
    assert [
        (m["headers"]["id"], m["body"][1]["cycle"], m["headers"]["retries"]) for m in popped
    ] == [(run.delivery_id, run.cycle, run.retries) for run in runs]
    assert len({m["properties"]["delivery_tag"] for m in popped}) == 5


def test_the_broker_channel_builds_one_client_per_pool():
    with app.connection_for_write() as connection:
        channel = cast("Channel", connection.default_channel)  # broker_transport's, in config.py
        first = channel._create_client()
        assert channel._create_client() is first
        channel._pool = None  # as after a reconnect
        assert channel._create_client() is not first


def test_a_broker_that_is_not_redis_gets_each_message_by_send_task():
    # The path for other brokers: RabbitMQ, with Celery's own configuration.
    from celery import Celery

    rabbit = Celery("webhooks-rabbit", broker="amqp://guest:guest@127.0.0.1:5672//")
    rabbit.config_from_object("webhooks.broker.config")
    # celery-types declares broker_url a read-only property; Celery's conf sets it.
    rabbit.conf.broker_url = "amqp://guest:guest@127.0.0.1:5672//"  # type: ignore[misc]
    rabbit.conf.broker_transport = None
    runs = [Run("bulk-each-1", 0, 0), Run("bulk-each-2", 1, 2)]
    with rabbit.connection_for_write() as connection:
        channel = cast("pyamqp.Channel", connection.default_channel)  # an amqp:// URL's
        channel.queue_delete(QUEUE)
        try:
            messages.publish(rabbit, runs, queue=QUEUE)
            deadline = time.monotonic() + 10  # publishing is not confirmed: RabbitMQ routes
            while (depth := messages.waiting(rabbit)) < len(runs) and (  # in its own time
                time.monotonic() < deadline
            ):
                time.sleep(0.05)
            got: list[tuple[str, int, int]] = []
            while len(got) < len(runs) and time.monotonic() < deadline:  # in its own time
                message = channel.basic_get(QUEUE, no_ack=True)
                if message is None:
                    time.sleep(0.05)
                    continue
                assert message.headers is not None  # Celery's task messages carry them
                got.append(
                    (
                        message.headers["id"],
                        json.loads(message.body)[1]["cycle"],
                        message.headers["retries"],
                    )
                )
        finally:
            channel.queue_delete(QUEUE)
    assert got == [(run.delivery_id, run.cycle, run.retries) for run in runs]
    assert depth == len(runs)  # the queue depth metric, read from RabbitMQ


def test_messages_carry_their_trace_context(redis_client, queue):
    """The context current where a batch is published, on the bulk path too; a run's
    own (the producer's, stored with its delivery) wins over it; none outside a span."""
    from opentelemetry.sdk.trace import TracerProvider

    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    runs = [Run("traced-1"), Run("traced-2")]
    with TracerProvider().get_tracer("test").start_as_current_span("producer") as span:
        messages.publish(app, runs, QUEUE, contexts={"traced-2": {"traceparent": given}})
    context = span.get_span_context()
    current = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    assert [m["headers"]["traceparent"] for m in _popped(redis_client)] == [current, given]
    messages.publish(app, runs[:1], QUEUE)
    assert "traceparent" not in _popped(redis_client)[0]["headers"]


def test_every_relied_on_internal_is_there():
    assert internals.missing() == []


def test_a_missing_internal_is_named(monkeypatch):
    from kombu.transport import redis as kombu_redis

    monkeypatch.delattr(kombu_redis.Channel, "conn_or_acquire")
    assert internals.missing() == ["kombu.transport.redis.Channel.conn_or_acquire"]
