"""Admission at publish: a destination's first runs beyond its concurrency limit plus
WEBHOOKS_DESTINATION_ADMISSION_MARGIN wait in its queue from their creation, and go
out as slots free (create_deliveries.lua, destination.lua)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import WORKER_ENV, created, until
from webhooks.broker.messages import store_list
from webhooks.dev.receiver import Receiver
from webhooks.dev.worker import start_worker, stop_worker
from webhooks.models import DeliveryStatus, Run
from webhooks.producer import Producer
from webhooks.storage.deliveries import Claim
from webhooks.storage.destinations import destination
from webhooks.system import get_default, get_store
from webhooks.worker.drain import drain
from webhooks.worker.runner import Done, Handoff, RunResult, run_attempt

pytestmark = pytest.mark.slow  # workers of its own

QUEUE = "admission"
# The producer's settings decide admission (bound 2 + 1) until a worker's attempt has
# left the destination (its limit is kept there); the worker's decide the slots.
PRODUCER = {"destination_concurrency": "2", "destination_admission_margin": "1"}
BOUND = 3


@pytest.fixture
def admission_worker(redis_client: redis.Redis, tmp_path: Path) -> Iterator[Callable[[], object]]:
    """Starts a worker on QUEUE when called (the test sets things up first)."""
    started = []

    def start() -> object:
        env = {**WORKER_ENV, "WEBHOOKS_DESTINATION_CONCURRENCY": "2"}
        started.append(
            start_worker(
                tmp_path / "worker.log", env, "-Q", QUEUE, "--concurrency=6", "-n", "admit@%h"
            )
        )
        return started[-1]

    yield start
    for process in started:
        stop_worker(process)


def create(receiver: Receiver, path: str, count: int) -> list[str]:
    """``count`` deliveries to ``path`` on QUEUE, as deliver_many writes them."""
    return created(receiver.url(path), count, QUEUE)


def broker_list() -> str:
    """The Redis list of QUEUE's messages."""
    target = store_list(get_default().app, QUEUE, get_default().settings.redis_url)
    assert target is not None  # the tests' broker is the store's Redis
    return target[1]


def dest_keys(receiver: Receiver) -> dict[str, str]:
    keys = get_default().keys
    dest = destination(receiver.url("/"), None)
    return {
        "waiting": keys.destination_waiting(dest),
        "admitted": keys.destination_admitted(dest),
        "admit": keys.destination_admit(dest),
    }


def delivered_once(receiver: Receiver, ids: list[str], wait_for: Callable[..., object]) -> None:
    """Every one of ``ids`` delivered by one attempt, and received exactly once."""
    for delivery_id in ids:
        delivery = wait_for(delivery_id, timeout=60)
        assert delivery.status is DeliveryStatus.DELIVERED, delivery  # type: ignore[attr-defined]
    seen = Counter(json.loads(r.body)["id"] for r in receiver.received())
    events = {json.loads(get_store().load(delivery_id)[1])["id"] for delivery_id in ids}
    assert {event_id: seen[event_id] for event_id in events} == dict.fromkeys(events, 1)


def test_a_burst_beyond_the_bound_waits_at_creation_and_is_delivered_once(
    settings_env, admission_worker, own_receiver, redis_client, wait_for
):
    settings_env(**PRODUCER)
    ids = create(own_receiver, "/sleep/0.05", 40)
    names = dest_keys(own_receiver)
    # Only the bound went to the broker; the rest wait, their messages kept.
    assert redis_client.zcard(names["waiting"]) == 40 - BOUND
    assert redis_client.zcard(names["admitted"]) == BOUND
    # Not those let out: one that finds the destination full is kept as it waits.
    assert redis_client.hlen(names["admit"]) == 2 * (40 - BOUND)
    queue_key = broker_list()
    assert redis_client.llen(queue_key) == BOUND

    admission_worker()
    delivered_once(own_receiver, ids, wait_for)
    assert own_receiver.max_inflight <= 2
    for name in names.values():
        assert not redis_client.exists(name), name  # nothing held once all is delivered


def test_places_of_messages_lost_with_a_worker_come_back(
    settings_env, admission_worker, own_receiver, redis_client, wait_for
):
    # WEBHOOKS_RECOVERY_SECONDS bounds how long a lost message holds its place.
    settings_env(**PRODUCER, timeout_seconds="1", recovery_seconds="2")
    ids = create(own_receiver, "/ok", 10)
    names = dest_keys(own_receiver)
    queue_key = broker_list()
    # What a SIGKILLed worker had taken off the queue is gone with it (ack emulation
    # off): here, the whole queue.
    assert redis_client.delete(queue_key) == 1
    assert redis_client.zcard(names["admitted"]) == BOUND
    time.sleep(2.1)
    # The next creation finds the places free and lets the oldest waiting runs out.
    ids += create(own_receiver, "/ok", 1)
    assert redis_client.llen(queue_key) == BOUND
    assert redis_client.zcard(names["waiting"]) == 10 - 2 * BOUND + 1

    admission_worker()  # the three lost come back through the backstop
    delivered_once(own_receiver, ids, wait_for)


def test_deleted_and_redelivered_runs_let_their_places_go(
    settings_env, admission_worker, own_receiver, redis_client, wait_for
):
    settings_env(**PRODUCER)
    ids = create(own_receiver, "/ok", 8)
    names = dest_keys(own_receiver)
    out, held = ids[:BOUND], ids[BOUND:]
    get_store().delete_many([out[0], held[0]])
    assert redis_client.zcard(names["admitted"]) == BOUND - 1
    assert redis_client.zcard(names["waiting"]) == len(held) - 1
    assert not redis_client.hexists(names["admit"], Run(held[0]).member)

    producer = Producer(get_default())
    producer.redeliver(out[1])
    producer.redeliver(held[1])
    admission_worker()
    kept = [i for i in ids if i not in (out[0], held[0])]
    delivered_once(own_receiver, kept, wait_for)
    # The old cycles' messages were dropped at their claim, their places with them.
    until(
        lambda: not any(redis_client.exists(name) for name in names.values()),
        10,
        "admission keys left behind",
    )


def _one_slot_taken(
    settings_env: Callable[..., None], receiver: Receiver, redis_client: redis.Redis
) -> tuple[Run, Run, Claim]:
    """Two deliveries to a destination of one slot, without admission (both messages go
    to the broker): the first's message taken off the queue and its attempt claimed,
    holding the slot; the second's message queued. The runs, and the first's claim."""
    settings_env(destination_concurrency="1", destination_admission_margin="")
    first, second = (Run(i) for i in create(receiver, "/ok", 2))
    redis_client.rpop(broker_list())  # the first's message, as a worker took it
    held = get_default().deliveries.claim_attempt(first, 30)
    assert held.entry is not None and held.entry.allowed
    return first, second, held


def test_a_taken_run_that_finds_its_destination_full_keeps_its_message_for_the_wake(
    settings_env, own_receiver, redis_client
):
    # The second finds the only slot taken. Its message, taken off the queue by a pool
    # process (here, this one), is kept as it waits, and pushed straight back as the
    # slot frees: not the promoter's.
    first, second, held = _one_slot_taken(settings_env, own_receiver, redis_client)
    system = get_default()
    names, queue_key = dest_keys(own_receiver), broker_list()
    (message,) = redis_client.lrange(queue_key, 0, -1)

    assert drain(system, system.app, QUEUE, Handoff(QUEUE, QUEUE, releases=True)) == 1
    assert redis_client.llen(queue_key) == 0
    assert redis_client.zrange(names["waiting"], 0, -1) == [second.member.encode()]
    assert redis_client.hgetall(names["admit"]) == {
        second.member.encode(): message,
        f"q:{second.member}".encode(): queue_key.encode(),
    }

    # The first's attempt leaves the slot: the second's message is back on the queue.
    step = run_attempt(system, first.delivery_id, 0, 0, claim=held)
    assert isinstance(step, Done) and step.result is RunResult.DELIVERED
    assert redis_client.lrange(queue_key, 0, -1) == [message]
    assert redis_client.zscore(system.keys.scheduled(), second.member) is None
    assert not redis_client.exists(names["admit"]) and not redis_client.exists(names["waiting"])
    assert drain(system, system.app, QUEUE, Handoff(QUEUE, QUEUE, releases=True)) == 1
    assert system.deliveries.get(second.delivery_id).status is DeliveryStatus.DELIVERED
    assert len(own_receiver.received()) == 2


def test_a_message_from_a_broker_apart_from_the_store_is_not_kept(
    settings_env, own_receiver, redis_client
):
    # Pushed onto a list the store's scripts cannot reach, a kept message could not be
    # released: the run waits without it, and the promoter sends one as it is woken.
    _, second, _ = _one_slot_taken(settings_env, own_receiver, redis_client)
    system, names = get_default(), dest_keys(own_receiver)
    assert drain(system, system.app, QUEUE, Handoff(QUEUE, QUEUE, releases=False)) == 1
    assert redis_client.zrange(names["waiting"], 0, -1) == [second.member.encode()]
    assert not redis_client.exists(names["admit"])


def test_a_run_queued_behind_an_open_circuits_probe_keeps_its_message(
    settings_env, own_receiver, redis_client
):
    settings_env(destination_admission_margin="")
    system = get_default()
    names = dest_keys(own_receiver)
    dest = destination(own_receiver.url("/"), None)
    breaker = system.keys.destination_breaker(dest)
    (run,) = (Run(i) for i in create(own_receiver, "/ok", 1))
    open_until = str(time.time() + 30)
    # Another run is scheduled to probe this opening already: this one waits for its result.
    redis_client.hset(breaker, mapping={"open_until": open_until, "wake_at": open_until})
    message = (b"its message, as taken", broker_list())
    assert system.gate.defer(dest, run, float(open_until), message) is False
    assert redis_client.zrange(names["waiting"], 0, -1) == [run.member.encode()]
    assert redis_client.hgetall(names["admit"]) == {
        run.member.encode(): message[0],
        f"q:{run.member}".encode(): message[1].encode(),
    }
