"""One run of the delivery task, called directly: a real Redis and receiver, no worker.

The deliveries go to a queue nobody consumes, so only these calls attempt them.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import QUEUE, created, event, keys, own_destination, stored
from webhooks.broker.messages import store_list
from webhooks.dev.receiver import Receiver
from webhooks.models import DeliveryStatus, Run
from webhooks.retry import RetryLater
from webhooks.settings import Settings
from webhooks.storage.deliveries import ClaimOutcome
from webhooks.system import System, get_default, get_endpoints, get_store
from webhooks.worker.drain import _schedule_handed, drain
from webhooks.worker.runner import Done, Handoff, RunResult, run_attempt


@pytest.fixture
def fresh(redis_client, receiver):
    """A stored delivery to a receiver path; removed afterwards."""
    made: list[str] = []

    def make(path: str, endpoint_id: str | None = None) -> str:
        (delivery,) = stored(event(), [(receiver.url(path), endpoint_id)], queue=QUEUE)
        redis_client.zrem(keys().due(), delivery.id)  # no worker's backstop may take it
        made.append(delivery.id)
        return delivery.id

    yield make
    get_store().delete_many(made)


def _held(redis_client, delivery_id: str) -> list[bytes]:
    """The delivery's runs in the claim set and the schedule."""
    return [
        member
        for key in (keys().running(), keys().scheduled())
        for member in redis_client.zrange(key, 0, -1)
        if member.startswith(delivery_id.encode())
    ]


def test_a_2xx_is_delivered_once_and_lets_go_of_everything(fresh, receiver, redis_client):
    delivery_id = fresh("/ok/runner")
    assert run_attempt(get_default(), delivery_id, 0, 0) == Done(RunResult.DELIVERED)
    (request,) = receiver.received("/ok/runner", delivery_id)
    assert request.headers["webhook-id"] == delivery_id
    delivery = get_store().get(delivery_id)
    assert delivery.status is DeliveryStatus.DELIVERED
    assert [(a.number, a.status_code) for a in delivery.attempts] == [(1, 200)]
    assert _held(redis_client, delivery_id) == []
    port = receiver.base.rsplit(":", 1)[1]
    assert redis_client.zcard(keys().destination_inflight(f"127.0.0.1:{port}")) == 0
    # The same run again, as a redelivered message: nothing more is sent.
    assert run_attempt(get_default(), delivery_id, 0, 0) == Done(RunResult.FINAL)
    assert len(receiver.received("/ok/runner", delivery_id)) == 1


def test_a_failure_asks_for_a_retry_that_waits_as_an_eta_when_short(
    fresh, receiver, redis_client, settings_env
):
    settings_env(retry_base_seconds="2", retry_jitter="0")
    delivery_id = fresh("/status/503")
    assert run_attempt(get_default(), delivery_id, 0, 0) == RetryLater(2.0, parked=False)
    delivery = get_store().get(delivery_id)
    assert delivery.status is DeliveryStatus.RETRYING and delivery.next_attempt_at is not None
    assert [a.error.kind for a in delivery.attempts if a.error] == ["http_status"]
    assert _held(redis_client, delivery_id) == []  # the task publishes the ETA message
    # Its message again, with nothing scheduled after it (the retry was never
    # published): the attempt is not repeated, its retry is asked for again.
    assert run_attempt(get_default(), delivery_id, 0, 0) == RetryLater(
        # pytest types approx as ApproxBase, though it stands in for a float in ==.
        pytest.approx(2.0, abs=0.5),  # type: ignore[arg-type]
        parked=False,
    )
    assert len(receiver.received("/status/503", delivery_id)) == 1


def test_a_long_wait_is_parked_with_the_attempts_record(fresh, redis_client, settings_env):
    settings_env(retry_base_seconds="100", retry_jitter="0")
    delivery_id = fresh("/status/500")
    assert run_attempt(get_default(), delivery_id, 0, 0) == RetryLater(100.0, parked=True)
    assert _held(redis_client, delivery_id) == [Run(delivery_id, 0, 1).member.encode()]
    assert get_store().get(delivery_id).status is DeliveryStatus.RETRYING
    # The parked retry is the next step: this run's message again is only a duplicate.
    assert run_attempt(get_default(), delivery_id, 0, 0) == Done(RunResult.DUPLICATE)


def test_runs_that_must_not_attempt(fresh, receiver, redis_client):
    assert run_attempt(get_default(), "runner-no-such-delivery", 0, 0) == Done(RunResult.MISSING)
    delivery_id = fresh("/ok/runner-stale")
    assert run_attempt(get_default(), delivery_id, 1, 0) == Done(RunResult.STALE)  # no cycle 1 yet
    # An attempt claimed by someone else, still within its lease.
    claim = get_store().claim_attempt(Run(delivery_id, 0, 0), lease=30)
    assert claim.outcome == "claimed"
    assert run_attempt(get_default(), delivery_id, 0, 0) == Done(RunResult.DUPLICATE)
    assert receiver.received("/ok/runner-stale") == []


def test_a_deleted_endpoint_stops_the_delivery_and_frees_its_claim(
    fresh, receiver, redis_client, tenant
):
    endpoint, _ = get_endpoints().add(receiver.url("/ok/runner-deleted"), tenant=tenant)
    delivery_id = fresh("/ok/runner-deleted", endpoint.id)
    # Gone between the delivery's creation and its run (deleting an endpoint also stops
    # its deliveries; this is the run that comes first).
    redis_client.delete(keys().endpoint(endpoint.id))
    assert run_attempt(get_default(), delivery_id, 0, 0) == Done(RunResult.RETRIES_EXHAUSTED)
    delivery = get_store().get(delivery_id)
    assert "was deleted" in (delivery.stop_reason or "") and delivery.attempts == []
    assert _held(redis_client, delivery_id) == []
    assert receiver.received("/ok/runner-deleted") == []


@pytest.mark.parametrize(
    ("more", "releases"),
    [(True, True), (False, True), (False, False)],
    ids=["more-runs", "last-run", "last-run-other-broker"],
)
def test_the_run_a_freed_slot_goes_to(redis_client, settings_env, more, releases):
    # A process that makes more runs is handed the run waiting for the slot its attempt
    # frees, claimed; one making its last run is handed none, and that run's message
    # goes to the queue at once, not to the schedule for the promoter's next look. Where
    # the record cannot send the message itself (another broker), the last run's process
    # is handed it unclaimed, and sends it as it stops (drain._schedule_handed).
    settings_env(destination_concurrency="1", destination_admission_margin="0")
    system = get_default()
    with own_destination() as own:
        first, waiting = created(own.url("/ok/slot"), 2, QUEUE)
        target = store_list(system.app, QUEUE, system.settings.redis_url)
        assert target is not None
        queue = target[1]

        def queued() -> list[str]:
            return [json.loads(raw)["headers"]["id"] for raw in redis_client.lrange(queue, 0, -1)]

        try:
            # Admitted alone: the other waits at the destination, its message kept.
            assert queued() == [first]
            redis_client.delete(queue)  # the first's message, run here instead
            handoff = Handoff(QUEUE, QUEUE, more=more, releases=releases)
            assert run_attempt(system, first, 0, 0, handoff=handoff) == Done(RunResult.DELIVERED)
            scheduled = redis_client.zscore(keys().scheduled(), Run(waiting).member)
            if more:
                ((run, claim),) = handoff.claimed
                assert (run, claim.outcome) == (Run(waiting), ClaimOutcome.CLAIMED)
                assert queued() == [] and scheduled is None
            elif releases:
                assert handoff.claimed == [] and handoff.runs == []
                assert queued() == [waiting] and scheduled is None
            else:
                assert handoff.claimed == [] and handoff.runs == [Run(waiting)]
                assert queued() == [] and scheduled is not None  # a moment ahead
                _schedule_handed(system, handoff)
                assert queued() == [waiting] and handoff.runs == []
                assert redis_client.zscore(keys().scheduled(), Run(waiting).member) is None
        finally:
            redis_client.delete(queue)
            get_store().delete_many([first, waiting])


def test_after_a_handed_run_the_drain_waits_for_the_next_handed_one(redis_client, settings_env):
    # Runs waiting at a busy destination come one by one, each claimed by the record of
    # the one before; a message on the queue is taken only once none is handed, not
    # lined up before a handed run's record (which would then hand its run unclaimed).
    settings_env(destination_concurrency="1", destination_admission_margin="0")
    system = get_default()
    with Receiver() as busy, Receiver() as other:
        first, *waiting = created(busy.url("/ok/busy"), 3, QUEUE)
        (elsewhere,) = created(other.url("/ok/other"), 1, QUEUE)
        target = store_list(system.app, QUEUE, system.settings.redis_url)
        assert target is not None
        try:
            # The first as if handed to this process, claimed: the other's message waits.
            for raw in redis_client.lrange(target[1], 0, -1):
                if json.loads(raw)["headers"]["id"] == first:
                    redis_client.lrem(target[1], 0, raw)
            assert redis_client.llen(target[1]) == 1
            claim = system.deliveries.claim_attempt(Run(first), 30)
            handoff = Handoff(QUEUE, QUEUE, claimed=[(Run(first), claim)])
            assert drain(system, system.app, QUEUE, handoff) == 4
            arrivals = sorted(busy.received() + other.received(), key=lambda r: r.at)
            made = [r.headers["webhook-id"] for r in arrivals]
            # The waiting two in either order: created in one call, they tie in time.
            assert made[0] == first and set(made[1:3]) == set(waiting), made
            assert made[3:] == [elsewhere], made
        finally:
            redis_client.delete(target[1])
            get_store().delete_many([first, *waiting, elsewhere])


def test_runs_handed_and_not_made_are_left_to_the_promoter_when_redis_is_gone(caplog):
    # They wait in the schedule (a moment ahead) until then: nothing raises out of the
    # drain's end, and the promoter sends them once Redis is back.
    system = System(Settings(redis_url="redis://127.0.0.1:1/0"))
    handoff = Handoff(QUEUE, QUEUE, runs=[Run("gone-redis-run")], releases=False)
    _schedule_handed(system, handoff)
    assert handoff.runs == []
    assert "could not send 1 runs handed over" in caplog.text
