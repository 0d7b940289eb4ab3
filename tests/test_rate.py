"""An endpoint's rate limit: deliveries a second at most, across all workers, waited
for without using an attempt; set through the API, the CLI and the store."""

from __future__ import annotations

import itertools
import json
import time
from bisect import bisect_left
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

from tests.conftest import WORKER_ENV, event, keys, stored
from webhooks import portal_token
from webhooks.cli import main
from webhooks.dev.receiver import Receiver
from webhooks.dev.worker import start_worker, stop_workers
from webhooks.errors import InvalidInput
from webhooks.models import DeliveryStatus, Run
from webhooks.producer import Producer
from webhooks.storage.destinations import PACE_HOLD, PACE_HORIZON, EntryOutcome
from webhooks.system import get_default, get_endpoints, get_store

BAD_RATES = [0, -1, 10_001, 1e308, "20", True, "NaN"]


def busiest_second(times: list[float]) -> int:
    """The most requests in any one-second window."""
    ordered = sorted(times)
    return max(
        (bisect_left(ordered, start + 1.0) - index for index, start in enumerate(ordered)),
        default=0,
    )


#: Starts go SPACING (1.05, destination.lua) over 1/rate apart: 0.2 s at this rate.
RATE = 5.25


def test_the_bucket_spaces_starts_and_reserves_one_start_per_run(quiet_db, settings_env):
    """Straight on the Lua: at 5.25/s (starts 0.2 s apart), a run is let in at once,
    the next with a start 0.2 s on (waited for in its worker), the next ones reserve
    a start each, 0.2 s apart, up to PACE_HORIZON ahead, and the rest queue for
    theirs. Coming back, a run that reserved a start keeps its place ahead of
    newcomers, and runs back together start 0.2 s apart, not in a burst."""
    gate, dest = get_default().gate, "ep_rated"
    now = time.time()
    first = gate.enter(dest, Run("r0"), lease=30, rate=RATE)
    assert first.outcome is EntryOutcome.OK and first.start_at == 0
    second = gate.enter(dest, Run("r1"), lease=30, rate=RATE)
    assert second.outcome is EntryOutcome.OK
    assert second.start_at == pytest.approx(now + 0.2, abs=0.05)
    assert 0.2 <= PACE_HOLD < 0.4 and PACE_HORIZON == 1.0
    entries = [gate.enter(dest, Run(f"r{i}"), lease=30, rate=RATE) for i in range(2, 8)]
    outcomes = [entry.outcome for entry in entries]
    assert outcomes == [EntryOutcome.PACED] * 4 + [EntryOutcome.THROTTLED] * 2
    starts = [entry.retry_at for entry in entries[:4]]
    assert starts[0] == pytest.approx(second.start_at + 0.2)
    assert [round(b - a, 6) for a, b in itertools.pairwise(starts)] == [0.2] * 3
    paced = quiet_db.zrange(keys().destination_paced(dest), 0, -1)
    assert paced == [Run(f"r{i}").member.encode() for i in range(2, 6)]
    # The throttled ones join the queue (here by hand, as the runner would); each
    # gets its reservation, and is scheduled for it, once its turn is in the horizon.
    throttled = keys().destination_throttled(dest)
    for number, entry in zip((6, 7), entries[4:], strict=True):
        quiet_db.zadd(keys().running(), {Run(f"r{number}").member: time.time() + 30})
        gate.throttle(dest, Run(f"r{number}"), entry, RATE)
    assert quiet_db.zrange(throttled, 0, -1) == [
        Run("r6").member.encode(),
        Run("r7").member.encode(),
    ]
    assert quiet_db.zscore(keys().running(), Run("r6").member) is None
    time.sleep(0.25)
    newcomer = gate.enter(dest, Run("newcomer"), lease=30, rate=RATE)
    assert newcomer.outcome is EntryOutcome.THROTTLED  # behind the queue, not ahead
    quiet_db.zadd(keys().running(), {Run("newcomer").member: time.time() + 30})
    gate.throttle(dest, Run("newcomer"), newcomer, 5)  # joining pumps the queue
    assert quiet_db.zscore(keys().scheduled(), Run("r6").member) == pytest.approx(starts[-1] + 0.2)
    assert quiet_db.zscore(keys().destination_paced(dest), Run("r6").member) is not None
    assert quiet_db.zrange(throttled, 0, 0) == [Run("r7").member.encode()]
    # r2 and r3 come back together (the next start made due now): r2 is let in at
    # once, r3 0.2 s later, both ahead of the reservations made after theirs.
    quiet_db.hset(keys().destination_breaker(dest), "rate_next", str(time.time()))
    back = gate.enter(dest, Run("r2"), lease=30, rate=RATE)
    assert back.outcome is EntryOutcome.OK and back.start_at == 0
    assert quiet_db.zscore(keys().destination_paced(dest), Run("r2").member) is None
    bunched = gate.enter(dest, Run("r3"), lease=30, rate=RATE)
    assert bunched.outcome is EntryOutcome.OK
    assert bunched.start_at == pytest.approx(time.time() + 0.2, abs=0.05)
    # Without a rate, nothing of this applies.
    assert gate.enter("ep_free", Run("x"), lease=30).outcome is EntryOutcome.OK
    assert gate.enter("ep_free", Run("y"), lease=30).start_at == 0


def test_a_paced_run_waits_in_the_schedule_uncounted(quiet_db, settings_env):
    (delivery,) = stored(event(), [("https://a.example/", "ep_paced")])
    run, gate = Run(delivery.id), get_default().gate
    quiet_db.zadd(keys().running(), {run.member: time.time() + 30})
    start = time.time() + 5
    gate.pace(run, start)
    assert quiet_db.zscore(keys().running(), run.member) is None
    assert quiet_db.zscore(keys().scheduled(), run.member) == pytest.approx(start)
    record = get_store().get(delivery.id)
    assert record.attempts == [] and record.next_attempt_at is not None
    assert record.next_attempt_at.timestamp() == pytest.approx(start, abs=0.001)


def test_the_store_keeps_and_refuses_rate_limits(tenant):
    endpoints = get_endpoints()
    endpoint, _ = endpoints.add("https://example.com/r", tenant=tenant, rate_limit=20)
    assert endpoint.rate_limit == 20 and endpoint.public()["rate_limit"] == 20
    assert endpoints.update(endpoint.id, {"rate_limit": 0.5}).rate_limit == 0.5
    assert endpoints.update(endpoint.id, {"rate_limit": None}).rate_limit is None
    before = endpoints.all(tenant)
    for bad in BAD_RATES:
        bad_value = float(bad) if bad == "NaN" else bad
        with pytest.raises(InvalidInput) as refused:
            endpoints.add("https://example.com/r", tenant=tenant, rate_limit=bad_value)  # type: ignore[arg-type]
        assert refused.value.field == "rate_limit"
        with pytest.raises(InvalidInput):
            endpoints.update(endpoint.id, {"rate_limit": bad_value})
    assert endpoints.all(tenant) == before


def test_the_api_sets_shows_and_refuses_rate_limits(api, tenant):
    base = f"/api/v1/tenants/{tenant}/endpoints"
    token = portal_token(tenant)  # the customer sets it through the portal's API
    created = api.call("POST", base, token, json={"url": "https://example.com/a", "rate_limit": 20})
    assert created.status_code == 201, created.text
    assert created.json()["rate_limit"] == 20
    path = f"{base}/{created.json()['id']}"
    assert api.call("GET", path, token).json()["rate_limit"] == 20
    changed = api.call("PATCH", path, token, json={"rate_limit": 2.5})
    assert changed.status_code == 200 and changed.json()["rate_limit"] == 2.5
    kept = api.call("PATCH", path, token, json={"description": "x"})
    assert kept.json()["rate_limit"] == 2.5  # left out: stays
    cleared = api.call("PATCH", path, token, json={"rate_limit": None})
    assert cleared.json()["rate_limit"] is None
    plain = api.call("POST", base, token, json={"url": "https://example.com/b"})
    assert plain.json()["rate_limit"] is None
    listed = {e["id"]: e for e in api.call("GET", base, token).json()["data"]}
    assert listed[created.json()["id"]]["rate_limit"] is None
    api.call("PATCH", path, token, json={"rate_limit": 7})
    for bad in [0, -1, 10_001, 1e308, "20", True, "fast", [], {}]:
        for method, url, body in (
            ("POST", base, {"url": "https://example.com/c", "rate_limit": bad}),
            ("PATCH", path, {"rate_limit": bad}),
        ):
            answer = api.call(method, url, token, json=body)
            assert answer.status_code == 422, (bad, answer.text)
            error = answer.json()["error"]
            assert error["field"] == "rate_limit", error
            assert "\n" not in error["message"]
    # Nothing refused was written.
    assert len(api.call("GET", base, token).json()["data"]) == 2
    assert api.call("GET", path, token).json()["rate_limit"] == 7
    document = api.call("GET", "/openapi.json", None).json()
    schema = document["components"]["schemas"]["EndpointIn"]["properties"]["rate_limit"]
    assert {"type": "number", "exclusiveMinimum": 0, "maximum": 10_000} in schema["anyOf"]


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_the_cli_sets_clears_and_refuses_rate_limits(tenant):
    code, out, err = _cli(
        "endpoints",
        "add",
        "https://example.com/c",
        "--tenant",
        tenant,
        "--rate-limit",
        "20",
        "--json",
    )
    assert code == 0, err
    endpoint = json.loads(out)
    assert endpoint["rate_limit"] == 20
    code, out, err = _cli("endpoints", "update", endpoint["id"], "--rate-limit", "5", "--json")
    assert code == 0, err
    assert json.loads(out)["rate_limit"] == 5
    code, out, err = _cli("endpoints", "update", endpoint["id"], "--description", "d", "--json")
    assert json.loads(out)["rate_limit"] == 5 and json.loads(out)["description"] == "d"
    code, out, _ = _cli("endpoints", "show", endpoint["id"])
    assert "5/s" in out
    code, out, err = _cli("endpoints", "update", endpoint["id"], "--rate-limit", "none", "--json")
    assert code == 0, err
    assert json.loads(out)["rate_limit"] is None
    for bad in ["0", "-1", "10001", "fast", "inf", "nan", ""]:
        for args in (
            ["endpoints", "add", "https://example.com/d", "--tenant", tenant],
            ["endpoints", "update", endpoint["id"]],
        ):
            code, out, err = _cli(*args, "--rate-limit", bad)
            assert code != 0 and out == ""
            lines = err.strip().splitlines()
            assert len(lines) == 1 and "--rate-limit" in lines[0], (bad, err)
    code, _, err = _cli("endpoints", "update", "ep_missing", "--rate-limit", "3")
    assert code != 0 and len(err.strip().splitlines()) == 1 and "ep_missing" in err
    assert [e.id for e in get_endpoints().all(tenant)] == [endpoint["id"]]
    assert get_endpoints().get(endpoint["id"]).rate_limit is None


@pytest.fixture(scope="module")
def rate_workers(redis_client, tmp_path_factory):
    """Two workers on a queue of their own, with the default concurrency limit (4)."""
    env = {
        **WORKER_ENV,
        "WEBHOOKS_DESTINATION_CONCURRENCY": "4",
        "WEBHOOKS_ADAPTIVE_PACING": "true",
    }
    folder = tmp_path_factory.mktemp("rate")
    with ThreadPoolExecutor() as starting:  # a start is mostly waiting: both at once
        workers = list(
            starting.map(
                lambda i: start_worker(
                    folder / f"w{i}.log", env, "-Q", "rate", "--concurrency=4", "-n", f"rate{i}@%h"
                ),
                range(2),
            )
        )
    yield
    stop_workers(workers)


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.usefixtures("rate_workers")
def test_an_endpoint_gets_no_more_than_its_rate(tenant, wait_for):
    """The issue's line: rate_limit 20, 600 deliveries, 2 workers: at most 22 requests
    in any one-second window at the receiver, and no attempt used up by waiting."""
    with Receiver() as receiver:
        endpoint, _ = get_endpoints().add(receiver.url("/ok/rated"), tenant=tenant, rate_limit=20)
        deliveries = [
            delivery
            for _ in range(600)
            for delivery in stored(event(), [(endpoint.url, endpoint.id)], queue="rate")
        ]
        started = time.monotonic()
        Producer(get_default()).enqueue([Run(d.id) for d in deliveries], queue="rate")
        done = [wait_for(d.id, timeout=60) for d in deliveries]
        took = time.monotonic() - started
        times = [r.at for r in receiver.received()]
    assert all(d.status is DeliveryStatus.DELIVERED for d in done)
    assert all(len(d.attempts) == 1 for d in done)  # waiting used no attempt
    assert len(times) == 600
    busiest = busiest_second(times)
    print(f"600 deliveries at 20/s: {took:.1f} s, busiest second {busiest}")
    assert busiest <= 22, busiest
    assert took >= 599 / 20 - 1  # the limit held, not the receiver


def test_a_tiny_rate_is_enforced_as_one_a_day(quiet_db, settings_env):
    gate, dest = get_default().gate, "ep_glacial"
    assert gate.enter(dest, Run("first"), lease=30, rate=1e-300).outcome is EntryOutcome.OK
    later = gate.enter(dest, Run("second"), lease=30, rate=1e-300)
    assert later.outcome is EntryOutcome.THROTTLED
    assert later.retry_at == pytest.approx(time.time() + 86400 * 1.05, abs=5)  # SPACING
    (delivery,) = stored(event(), [("https://a.example/", dest)])
    gate.throttle(dest, Run(delivery.id), later, 1e-300)  # its record can say when
    assert get_store().get(delivery.id).next_attempt_at is not None
