"""The one-command bulk publish writes what Celery's apply_async writes, in order."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from webhooks import app
from webhooks.bulk import Message, publish_messages
from webhooks.tasks import deliver

# A queue no test worker consumes, so the messages stay where the test can read them.
QUEUE = "bulk-check"


@pytest.fixture
def queue(redis_client):
    redis_client.delete(QUEUE)
    yield QUEUE
    redis_client.delete(QUEUE)


def _popped(redis_client) -> list[dict[str, Any]]:
    """The queue's messages in the order a worker takes them (kombu pops the tail)."""
    messages = []
    while (raw := redis_client.rpop(QUEUE)) is not None:
        message = json.loads(raw)
        message["body"] = json.loads(base64.b64decode(message["body"]))
        messages.append(message)
    return messages


def _without_ids(message: dict[str, Any], delivery_id: str) -> dict[str, Any]:
    text = json.dumps(message, sort_keys=True).replace(delivery_id, "<id>")
    result: dict[str, Any] = json.loads(text)
    result["properties"].pop("delivery_tag")  # a fresh uuid per message, either way
    return result


def test_bulk_message_is_the_message_apply_async_writes(redis_client, queue):
    deliver.enqueue("bulk-one", 3, queue=queue, retries=2)
    assert publish_messages(app, deliver.name, [Message("bulk-two", 3, 2)], queue=queue)
    one, two = _popped(redis_client)
    assert two["headers"]["id"] == "bulk-two" and two["body"][0] == ["bulk-two"]
    assert _without_ids(two, "bulk-two") == _without_ids(one, "bulk-one")


def test_bulk_keeps_the_order_and_each_run(redis_client, queue):
    # The third id needs escaping in JSON: it takes the long way, in its place. The
    # fourth holds the digits the template uses as a stand-in for the cycle.
    names = {2: 'bulk "2"', 3: "bulk-918273645501"}
    runs = [Message(names.get(n, f"bulk-{n}"), n % 2, n % 3) for n in range(5)]
    assert publish_messages(app, deliver.name, runs, queue=queue)
    popped = _popped(redis_client)
    assert [(m["headers"]["id"], m["body"][1]["cycle"], m["headers"]["retries"])
            for m in popped] == [tuple(run) for run in runs]
    assert len({m["properties"]["delivery_tag"] for m in popped}) == 5


def test_the_broker_channel_builds_one_client_per_pool():
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        channel._pool = None  # as after a reconnect
        assert channel._create_client() is not first


def test_where_one_command_does_not_apply_each_message_goes_by_apply_async(redis_client, queue):
    # The path for brokers other than plain redis:// (kombu's own transport).
    runs = [Message("bulk-each-1", 0, 0), Message("bulk-each-2", 1, 2)]
    deliver._enqueue_each(runs, queue)
    popped = _popped(redis_client)
    assert [(m["headers"]["id"], m["body"][1]["cycle"], m["headers"]["retries"])
            for m in popped] == [tuple(run) for run in runs]
