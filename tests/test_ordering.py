"""Ordered delivery by key, step by step against a real Redis that no worker reads: who
waits behind whom, who gets a run, and what wakes the next (chain.lua)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from click.testing import CliRunner

import webhooks
from tests.conftest import OPERATOR_TOKEN, QUIET_URL, as_bytes_list, event
from tests.web import InProcess
from webhooks import portal_token
from webhooks.cli import main
from webhooks.clock import now
from webhooks.errors import InvalidInput
from webhooks.models import Attempt, AttemptError, DeliveryStatus, ErrorKind, Run
from webhooks.producer import Producer
from webhooks.storage.deliveries import ClaimOutcome
from webhooks.system import System, get_default

pytestmark = pytest.mark.timeout(60)

ENDPOINT_URL = "http://127.0.0.1:9/ordered"  # never contacted: no worker reads this store


@pytest.fixture
def quiet(quiet_db: redis.Redis) -> Iterator[tuple[System, str, str]]:
    """The quiet store, a tenant and one endpoint of it."""
    system = get_default()
    system.tenants.add("acct_order", "Ordered")
    endpoint, _ = system.endpoints.add(ENDPOINT_URL, tenant="acct_order")
    yield system, "acct_order", endpoint.id


def _publish(system: System, tenant: str, key: str | None, **fields: Any) -> str:
    (delivery_id,) = Producer(system).publish(event(**fields), tenant=tenant, ordering_key=key)
    return delivery_id


def _scheduled(client: redis.Redis, system: System) -> set[str]:
    return {m.decode() for m in as_bytes_list(client.zrange(system.keys.scheduled(), 0, -1))}


def test_with_no_message_kept_the_next_is_scheduled_for_the_promoter(quiet, quiet_db):
    system, tenant, _ = quiet
    first, second = (_publish(system, tenant, "k") for _ in range(2))
    # As with a broker other than the store's Redis: no message is kept to push.
    quiet_db.hdel(system.keys.delivery(second), "wake_message", "wake_queue")
    system.deliveries.set_status(first, DeliveryStatus.DELIVERED)
    assert Run(second).member in _scheduled(quiet_db, system)
    assert second not in _queued(quiet_db)
    due = quiet_db.zscore(system.keys.due(), second)
    assert due is not None


def _queued(client: redis.Redis) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange("webhooks", 0, -1)]


def test_only_the_head_of_a_key_gets_a_run(quiet, quiet_db):
    system, tenant, _ = quiet
    first, second, third = (_publish(system, tenant, "set_1") for _ in range(3))
    other = _publish(system, tenant, "set_2")
    plain = _publish(system, tenant, None)
    store = system.deliveries
    assert store.get(first).waiting_behind is None
    assert store.get(second).waiting_behind == first
    assert store.get(third).waiting_behind == second
    assert store.get(second).ordering_key == "set_1"
    # The heads of each key and the delivery without one go now; the rest cost nothing.
    assert sorted(_queued(quiet_db)) == sorted([first, other, plain])
    due = {m.decode() for m in as_bytes_list(quiet_db.zrange(system.keys.due(), 0, -1))}
    assert due == {first, other, plain}
    # A waiting delivery's JSON says what it waits for.
    shown = json.loads(store.get(third).model_dump_json())
    assert shown["waiting_behind"] == second and shown["ordering_key"] == "set_1"


def test_a_stray_run_of_a_waiting_delivery_is_refused_at_the_claim(quiet):
    system, tenant, _ = quiet
    first = _publish(system, tenant, "k")
    second = _publish(system, tenant, "k")
    claim = system.deliveries.claim_attempt(Run(second), 5)
    assert claim.outcome is ClaimOutcome.BEHIND
    assert system.deliveries.get(second).attempts == []
    assert system.deliveries.claim_attempt(Run(first), 5).outcome is ClaimOutcome.CLAIMED


def test_the_head_finishing_wakes_the_next_in_the_same_step(quiet, quiet_db):
    system, tenant, _ = quiet
    first, second, third = (_publish(system, tenant, "k") for _ in range(3))
    store = system.deliveries
    store.set_status(first, DeliveryStatus.DELIVERED)
    assert store.get(second).waiting_behind is None
    # Its first message, kept with it, is in the queue now; the third's is not.
    assert _queued(quiet_db) == [second, first]
    assert store.get(third).waiting_behind == second
    assert store.claim_attempt(Run(second), 5).outcome is ClaimOutcome.CLAIMED


def test_skip_marks_the_head_exhausted_and_wakes_the_next(quiet, quiet_db):
    system, tenant, _ = quiet
    first, second = (_publish(system, tenant, "k") for _ in range(2))
    result = CliRunner().invoke(main, ["skip", first, "--tenant", tenant, "--json"])
    assert result.exit_code == 0, result.output
    skipped = json.loads(result.output)
    assert skipped["status"] == "retries_exhausted"
    assert system.deliveries.get(first).stop_reason == "skipped by an operator"
    assert system.deliveries.get(second).waiting_behind is None
    assert second in _queued(quiet_db)
    # Finished now: a second skip is refused, naming why.
    again = CliRunner().invoke(main, ["skip", first])
    assert again.exit_code != 0 and "only an unfinished delivery" in again.output
    # Another tenant's delivery is not found.
    other = CliRunner().invoke(main, ["skip", second, "--tenant", "acct_nobody"])
    assert other.exit_code != 0


def test_skipping_a_waiting_one_hands_its_place_to_its_follower(quiet):
    system, tenant, _ = quiet
    first, second, third = (_publish(system, tenant, "k") for _ in range(3))
    system.deliveries.skip(second)
    assert system.deliveries.get(third).waiting_behind == first
    system.deliveries.set_status(first, DeliveryStatus.RETRIES_EXHAUSTED)
    assert system.deliveries.get(third).waiting_behind is None


def test_redeliver_is_an_attempt_now_outside_the_order(quiet, quiet_db):
    system, tenant, _ = quiet
    first, second, third = (_publish(system, tenant, "k") for _ in range(3))
    producer, store = Producer(system), system.deliveries
    # A waiting one redelivered goes now and leaves its place to its follower.
    producer.redeliver(second)
    assert store.get(second).waiting_behind is None
    assert store.get(third).waiting_behind == first
    assert store.claim_attempt(Run(second, 1), 5).outcome is ClaimOutcome.CLAIMED
    # A finished one redelivered takes no place: the next of the key still waits for
    # the head, and the redelivered one's end wakes nobody.
    store.set_status(second, DeliveryStatus.DELIVERED)
    producer.redeliver(second)
    store.set_status(second, DeliveryStatus.DELIVERED)
    assert store.get(third).waiting_behind == first
    # A new delivery of the key goes behind the last one waiting.
    fourth = _publish(system, tenant, "k")
    assert store.get(fourth).waiting_behind == third


def test_a_disabled_endpoint_stops_the_whole_key(quiet, quiet_db):
    system, tenant, endpoint_id = quiet
    ids = [_publish(system, tenant, "k") for _ in range(3)]
    system.endpoints.disable(endpoint_id, "paused by the test")
    assert system.deliveries.statuses(ids) == [DeliveryStatus.RETRIES_EXHAUSTED] * 3
    assert quiet_db.exists(system.keys.ordering_chain(endpoint_id, "k")) == 0
    # Enabled again, a new event of the key goes at once.
    system.endpoints.enable(endpoint_id)
    assert system.deliveries.get(_publish(system, tenant, "k")).waiting_behind is None


def test_deleting_the_tenant_leaves_no_chain(quiet, quiet_db):
    system, tenant, endpoint_id = quiet
    for _ in range(3):
        _publish(system, tenant, "k")
    system.tenants.delete(tenant)
    assert quiet_db.exists(system.keys.ordering_chain(endpoint_id, "k")) == 0


def test_each_endpoint_has_its_own_order(quiet):
    system, tenant, endpoint_id = quiet
    other, _ = system.endpoints.add(ENDPOINT_URL + "/2", tenant=tenant)
    firsts = Producer(system).publish(event(), tenant=tenant, ordering_key="k")
    seconds = Producer(system).publish(event(), tenant=tenant, ordering_key="k")
    behind = {d.endpoint_id: d.waiting_behind for d in map(system.deliveries.get, seconds)}
    by_endpoint = {system.deliveries.get(i).endpoint_id: i for i in firsts}
    assert behind == {endpoint_id: by_endpoint[endpoint_id], other.id: by_endpoint[other.id]}


def test_publishing_again_adds_nothing_to_the_order(quiet):
    system, tenant, _ = quiet
    raw = event()
    (first,) = Producer(system).publish(raw, tenant=tenant, ordering_key="k")
    (again,) = Producer(system).publish(raw, tenant=tenant, ordering_key="k")
    assert again == first
    second = _publish(system, tenant, "k")
    assert system.deliveries.get(second).waiting_behind == first


LONG_KEY = ["--ordering-key", "x" * 300]

BAD_KEYS = [
    ("x" * 257, "limit is 256"),
    ("set\n1", "control characters"),
    ("set\x7f", "control characters"),
    ("set\x85", "control characters"),
    ("", "1 to 256"),
]


@pytest.mark.parametrize(("key", "problem"), BAD_KEYS)
def test_a_bad_key_is_refused_before_anything_is_written(quiet, quiet_db, key, problem):
    _, tenant, _ = quiet
    before = quiet_db.dbsize()
    with pytest.raises(InvalidInput, match=problem) as refused:
        webhooks.publish(event(), tenant=tenant, ordering_key=key)
    assert isinstance(refused.value, ValueError) and refused.value.field == "ordering_key"
    assert quiet_db.dbsize() == before


def test_a_key_of_256_printable_characters_is_taken(quiet):
    system, tenant, _ = quiet
    key = "é:/ " * 64
    assert system.deliveries.get(_publish(system, tenant, key)).ordering_key == key


def test_the_api_takes_the_key_beside_the_event_and_refuses_a_bad_one(quiet, quiet_db):
    system, tenant, _ = quiet
    api = InProcess(system, OPERATOR_TOKEN)
    path = f"/api/v1/tenants/{tenant}/events"
    first = api.call("POST", path, json={**event(), "ordering_key": "set_9"}).json()[
        "delivery_ids"
    ][0]
    second = api.call("POST", path, json={**event(), "ordering_key": "set_9"}).json()[
        "delivery_ids"
    ][0]
    shown = api.call("GET", f"/api/v1/tenants/{tenant}/deliveries/{second}").json()
    assert shown["waiting_behind"] == first and shown["ordering_key"] == "set_9"
    listed = api.call("GET", f"/api/v1/tenants/{tenant}/deliveries").json()["data"]
    assert {d["id"]: d["waiting_behind"] for d in listed} == {first: None, second: first}
    before = quiet_db.dbsize()
    refused = api.call("POST", path, json={**event(), "ordering_key": "a\tb"})
    assert refused.status_code == 422 and "ordering_key" in refused.text
    assert quiet_db.dbsize() == before
    # The operator skips the head over the API too; the tenant may not, a finished
    # delivery is refused, and another tenant's is not found.
    skip = f"/api/v1/tenants/{tenant}/deliveries/{first}/skip"
    assert api.call("POST", skip, portal_token(tenant)).status_code == 403
    assert api.call("POST", skip).json()["status"] == "retries_exhausted"
    again = api.call("POST", skip)
    assert again.status_code == 409 and "only an unfinished delivery" in again.text
    system.tenants.add("acct_other", "Other")
    other = f"/api/v1/tenants/acct_other/deliveries/{second}/skip"
    assert api.call("POST", other).status_code == 404
    assert (
        api.call("GET", f"/api/v1/tenants/{tenant}/deliveries/{second}").json()["waiting_behind"]
        is None
    )


def test_the_command_line_publishes_with_a_key(quiet, tmp_path):
    system, tenant, _ = quiet
    path = tmp_path / "event.json"
    ids = []
    for _ in range(2):
        path.write_text(json.dumps(event()))
        result = CliRunner().invoke(
            main, ["publish", str(path), "--tenant", tenant, "--ordering-key", "k", "--json"]
        )
        assert result.exit_code == 0, result.output
        ids += json.loads(result.output)["delivery_ids"]
    assert system.deliveries.get(ids[1]).waiting_behind == ids[0]
    listed = CliRunner().invoke(main, ["show", ids[1]])
    assert f"(behind{ids[0]})" in "".join(listed.output.split())
    path.write_text(json.dumps(event()))
    bad = subprocess.run(
        [sys.executable, "-m", "webhooks", "publish", str(path), "--tenant", tenant, *LONG_KEY],
        capture_output=True,
        text=True,
        timeout=30,
        env={"WEBHOOKS_REDIS_URL": QUIET_URL, "PATH": ""},
    )
    assert bad.returncode != 0 and "ordering_key" in bad.stderr


def test_a_head_skipped_mid_attempt_stays_skipped_when_the_attempt_fails(quiet, quiet_db):
    system, tenant, _ = quiet
    first, second = (_publish(system, tenant, "k") for _ in range(2))
    store, run = system.deliveries, Run(first)
    claim = store.claim_attempt(run, 5)
    assert claim.outcome is ClaimOutcome.CLAIMED
    store.skip(first)
    failed = Attempt(
        number=1,
        started_at=now(),
        duration_ms=3.0,
        status_code=500,
        error=AttemptError(kind=ErrorKind.HTTP_STATUS, message="HTTP 500"),
        response_body="",
    )
    later = now() + timedelta(hours=1)
    store.record_attempt(run, failed, DeliveryStatus.RETRYING, later, park=True, tenant_id=tenant)
    skipped = store.get(first)
    assert skipped.status is DeliveryStatus.RETRIES_EXHAUSTED
    assert skipped.stop_reason == "skipped by an operator" and len(skipped.attempts) == 1
    assert run.next().member not in _scheduled(quiet_db, system)
    assert quiet_db.zscore(system.keys.due(), first) is None
    assert quiet_db.zscore(system.keys.running(), run.member) is None
    assert store.get(second).waiting_behind is None


def test_deleting_deliveries_wakes_only_one_that_is_left(quiet, quiet_db):
    system, tenant, _ = quiet
    first, second, third = (_publish(system, tenant, "k") for _ in range(3))
    quiet_db.delete("webhooks")  # the head's message: what is pushed next is seen alone
    # The head and the next deleted together: the one left is woken, not the deleted one.
    system.deliveries.delete_many([first, second])
    assert _queued(quiet_db) == [third]
    assert system.deliveries.get(third).waiting_behind is None
    assert quiet_db.lrange(system.keys.ordering_chain(quiet[2], "k"), 0, -1) == [third.encode()]


def test_a_key_whose_head_is_gone_is_healed_when_the_next_joins(quiet, quiet_db):
    system, tenant, endpoint_id = quiet
    first, second = (_publish(system, tenant, "k") for _ in range(2))
    quiet_db.delete("webhooks", system.keys.delivery(first))  # as if its record expired
    third = _publish(system, tenant, "k")
    assert system.deliveries.get(second).waiting_behind is None
    assert _queued(quiet_db) == [second]
    assert system.deliveries.get(third).waiting_behind == second
    chain = quiet_db.lrange(system.keys.ordering_chain(endpoint_id, "k"), 0, -1)
    assert chain == [second.encode(), third.encode()]
