"""The hourly activity counters and what a delivery sent, on a real Redis, without a
worker: attempts recorded through the store's own scripts, read back through the API
in this process (``GET .../activity``, ``GET /activity``, ``GET .../request``)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from tests.conftest import OPERATOR_TOKEN, event, keys, stored
from tests.web import InProcess
from webhooks import portal_token
from webhooks.clock import isoformat, now
from webhooks.models import Attempt, AttemptError, Delivery, DeliveryStatus, ErrorKind, Run
from webhooks.retry import BackoffPolicy
from webhooks.storage.activity import ACTIVITY_DAYS
from webhooks.system import get_default, get_endpoints, get_settings, get_store, get_tenants

SECRET_HEADER = "Bearer do-not-show-7f3a9c"


@pytest.fixture
def quiet_api(quiet_db: redis.Redis) -> InProcess:
    """The API on a database of its own, so every tenant's counters are this test's."""
    return InProcess(get_default(), OPERATOR_TOKEN)


@pytest.fixture
def customer(quiet_db: redis.Redis) -> Iterator[tuple[str, str, str]]:
    """(tenant, an endpoint with a header of its own, another endpoint)."""
    tenant_id = f"acct_{time.time_ns()}"
    get_tenants().add(tenant_id, "Activity Co")
    first, _ = get_endpoints().add(
        "http://127.0.0.1:9/hooks", tenant=tenant_id, headers={"Authorization": SECRET_HEADER}
    )
    second, _ = get_endpoints().add("http://127.0.0.1:9/other", tenant=tenant_id)
    yield tenant_id, first.id, second.id


def _attempt(number: int, status_code: int) -> Attempt:
    ok = 200 <= status_code < 300
    return Attempt(
        number=number,
        started_at=now(),
        duration_ms=3.0,
        status_code=status_code,
        error=None if ok else AttemptError(kind=ErrorKind.HTTP_STATUS, message="HTTP 500"),
        response_body="",
    )


def _deliveries(tenant_id: str, endpoint_id: str, count: int) -> list[Delivery]:
    return [
        stored(event(), [("http://127.0.0.1:9/hooks", endpoint_id)], tenant=tenant_id)[0]
        for _ in range(count)
    ]


def _record(
    delivery: Delivery, retries: int, code: int, status: DeliveryStatus, tenant_id: str
) -> None:
    due = None if status in (DeliveryStatus.DELIVERED, DeliveryStatus.RETRIES_EXHAUSTED) else now()
    get_store().record_attempt(
        Run(delivery.id, 0, retries), _attempt(retries + 1, code), status, due, tenant_id=tenant_id
    )


def _totals(body: dict[str, Any]) -> dict[str, int]:
    kinds = ("delivered_first_try", "delivered_after_retries", "failed_attempts", "exhausted")
    return {kind: sum(bucket[kind] for bucket in body["buckets"]) for kind in kinds}


def test_counters_by_outcome_tenant_and_endpoint(
    quiet_api: InProcess, customer: tuple[str, str, str], quiet_db: redis.Redis
) -> None:
    tenant_id, first, second = customer
    on_time = _deliveries(tenant_id, first, 3)
    for delivery in on_time:
        _record(delivery, 0, 200, DeliveryStatus.DELIVERED, tenant_id)
    late = _deliveries(tenant_id, first, 1)[0]
    _record(late, 0, 500, DeliveryStatus.RETRYING, tenant_id)
    _record(late, 1, 204, DeliveryStatus.DELIVERED, tenant_id)
    _record(late, 1, 204, DeliveryStatus.DELIVERED, tenant_id)  # a repeated call: on record
    out_of_retries, stopped = _deliveries(tenant_id, second, 2)
    _record(out_of_retries, 0, 500, DeliveryStatus.RETRIES_EXHAUSTED, tenant_id)
    _record(stopped, 0, 500, DeliveryStatus.RETRYING, tenant_id)
    assert get_store().stop_unfinished([stopped.id], "endpoint deleted") == [stopped.id]
    # Its attempt in flight comes back after the stop: the attempt counts, the outcome
    # was counted by the stop.
    _record(stopped, 1, 500, DeliveryStatus.RETRIES_EXHAUSTED, tenant_id)

    answer = quiet_api.call("GET", f"/api/v1/tenants/{tenant_id}/activity?window=24h")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["window"] == "24h"
    assert _totals(body) == {
        "delivered_first_try": 3,
        "delivered_after_retries": 1,
        "failed_attempts": 4,
        "exhausted": 2,
    }
    hours = [datetime.fromisoformat(b["hour"]) for b in body["buckets"]]
    assert len(hours) == 24 and hours[-1] <= now() < hours[-1] + timedelta(hours=1)
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(hours))
    assert body["buckets"][-1]["delivered_first_try"] == 3  # all in this hour
    rates = {e["endpoint_id"]: e for e in body["endpoints"]}
    assert list(rates) == [first, second]  # every endpoint, oldest first
    assert rates[first]["success_rate"] == 0.8  # 4 of 5 attempts answered 2XX
    assert (rates[first]["delivered"], rates[first]["failed_attempts"]) == (4, 1)
    assert rates[second]["success_rate"] == 0.0
    assert (rates[second]["failed_attempts"], rates[second]["exhausted"]) == (3, 2)

    week = quiet_api.call("GET", f"/api/v1/tenants/{tenant_id}/activity?window=7d").json()
    assert len(week["buckets"]) == 7 * 24 and _totals(week) == _totals(body)
    everyone = quiet_api.call("GET", "/api/v1/activity?window=7d")
    assert everyone.status_code == 200, everyone.text
    assert len(everyone.json()["buckets"]) == 168 and _totals(everyone.json()) == _totals(body)

    hour = int(time.time()) // 3600 * 3600
    for key in (keys().activity(hour), keys().tenant_activity(tenant_id, hour)):
        assert (ACTIVITY_DAYS - 1) * 86400 < int(quiet_db.ttl(key)) <= ACTIVITY_DAYS * 86400


def test_activity_refusals_and_a_deleted_tenant(
    quiet_api: InProcess, customer: tuple[str, str, str], quiet_db: redis.Redis
) -> None:
    tenant_id, first, _ = customer
    path = f"/api/v1/tenants/{tenant_id}/activity"
    for window in ("1h", "24H", ""):
        refused = quiet_api.call("GET", f"{path}?window={window}")
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["field"] == "window"
    assert quiet_api.call("GET", path, token=None).status_code == 401
    token = portal_token(tenant_id)
    assert quiet_api.call("GET", path, token=token).status_code == 200  # its own
    assert quiet_api.call("GET", "/api/v1/activity", token=token).status_code == 403
    assert quiet_api.call("GET", "/api/v1/tenants/acct_nobody/activity").status_code == 404
    other = f"acct_other{time.time_ns()}"
    get_tenants().add(other, "Someone else")
    assert (
        quiet_api.call("GET", f"/api/v1/tenants/{other}/activity", token=token).status_code == 404
    )
    empty = quiet_api.call("GET", f"/api/v1/tenants/{other}/activity").json()
    assert _totals(empty) == dict.fromkeys(_totals(empty), 0) and empty["endpoints"] == []

    (delivery,) = _deliveries(tenant_id, first, 1)
    _record(delivery, 0, 200, DeliveryStatus.DELIVERED, tenant_id)
    hour = int(time.time()) // 3600 * 3600
    assert quiet_db.exists(keys().tenant_activity(tenant_id, hour))
    get_tenants().delete(tenant_id)
    assert not quiet_db.exists(keys().tenant_activity(tenant_id, hour))
    get_tenants().add(tenant_id, "Registered again")
    again = quiet_api.call("GET", path).json()
    assert _totals(again)["delivered_first_try"] == 0


def test_what_a_delivery_sent(quiet_api: InProcess, customer: tuple[str, str, str]) -> None:
    tenant_id, first, _ = customer
    raw = event()
    (delivery,) = stored(raw, [("http://127.0.0.1:9/hooks", first)], tenant=tenant_id)
    path = f"/api/v1/tenants/{tenant_id}/deliveries/{delivery.id}/request"

    before = quiet_api.call("GET", path)
    assert before.status_code == 200, before.text
    sent = before.json()
    _, body = get_store().load(delivery.id)
    assert sent["body"] == body.decode() and json.loads(sent["body"])["id"] == raw["id"]
    schedule = sent["retry_schedule"]
    assert (schedule["attempts_made"], schedule["max_attempts"]) == (0, 15)
    assert [u["number"] for u in schedule["upcoming"]] == list(range(1, 16))

    _record(delivery, 0, 500, DeliveryStatus.RETRYING, tenant_id)
    _record(delivery, 1, 500, DeliveryStatus.RETRYING, tenant_id)
    answer = quiet_api.call("GET", path)
    sent = answer.json()
    assert SECRET_HEADER not in answer.text and "do-not-show" not in answer.text
    headers = {h["name"]: h for h in sent["headers"]}
    assert headers["Authorization"] == {"name": "Authorization", "value": "…", "masked": True}
    assert (
        headers["webhook-signature"]["masked"] and headers["webhook-signature"]["value"] == "v1,…"
    )
    assert headers["webhook-id"]["value"] == delivery.id
    assert headers["Content-Type"]["value"] == "application/json"
    assert headers["Content-Length"]["value"] == str(len(body))
    assert headers["User-Agent"]["value"].startswith("webhooks/")
    shown = get_store().get(delivery.id)
    stamps = [str(int(a.started_at.timestamp())) for a in shown.attempts]
    assert [a["webhook_timestamp"] for a in sent["attempts"]] == stamps
    assert headers["webhook-timestamp"]["value"] == stamps[-1]
    # The schedule is the retry policy's: the next at its due time, then nominal waits.
    policy = BackoffPolicy.from_settings(get_settings())
    assert shown.next_attempt_at is not None
    expected = [
        {"number": number, "due_at": isoformat(due)}
        for number, due in policy.ahead(2, shown.next_attempt_at)
    ]
    schedule = sent["retry_schedule"]
    assert schedule["attempts_made"] == 2 and schedule["upcoming"] == expected
    assert expected[0]["number"] == 3 and len(expected) == 13

    _record(delivery, 2, 200, DeliveryStatus.DELIVERED, tenant_id)
    assert quiet_api.call("GET", path).json()["retry_schedule"]["upcoming"] == []

    token = portal_token(tenant_id)
    assert quiet_api.call("GET", path, token=token).status_code == 200
    other = f"acct_other{time.time_ns()}"
    get_tenants().add(other, "Someone else")
    elsewhere = f"/api/v1/tenants/{other}/deliveries/{delivery.id}/request"
    assert quiet_api.call("GET", elsewhere).status_code == 404
    assert quiet_api.call("GET", path.replace(delivery.id, "not-an-id")).status_code == 404


def test_the_schedule_ahead_follows_the_policy() -> None:
    policy = BackoffPolicy(base=5.0)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = policy.schedule()
    ahead = policy.ahead(1, start)
    assert ahead[0] == (2, start)
    assert [number for number, _ in ahead] == [row.attempt for row in rows]
    for (_, due), row in zip(ahead, rows, strict=True):
        assert due == start + timedelta(seconds=row.elapsed - rows[0].elapsed)
    assert policy.ahead(14, start) == [(15, start)]
    assert policy.ahead(15, start) == []
