"""The endpoint-health rule and Retry-After parsing, against a real Redis."""

from __future__ import annotations

import time
from datetime import timedelta
from email.utils import format_datetime

import pytest

from webhooks.clock import now
from webhooks.models import Attempt, AttemptError
from webhooks.retry import BackoffPolicy, RetryLater
from webhooks.sending.attempt import parse_retry_after
from webhooks.system import get_endpoints
from webhooks.worker.health import judge


def _attempt(code: int) -> Attempt:
    error = None if 200 <= code < 300 else AttemptError(kind="http_status", message=str(code))
    return Attempt(
        number=1, started_at=now(), duration_ms=1.0, status_code=code, error=error, response_body=""
    )


@pytest.fixture
def endpoint(tenant):
    created, _ = get_endpoints().add("https://example.com/health", tenant=tenant)
    yield created
    get_endpoints().delete(created.id)


def test_gone_disables_at_once(endpoint):
    reason = judge(get_endpoints(), endpoint, _attempt(410), False, timedelta(days=5))
    assert reason is not None and "410" in reason


def test_sustained_failure_needs_time_and_an_exhausted_delivery(endpoint):
    store, window = get_endpoints(), timedelta(seconds=0.3)
    assert judge(store, endpoint, _attempt(500), False, window) is None
    time.sleep(0.4)
    # Long enough without a 2XX, but nothing exhausted yet: keep sending.
    assert judge(store, endpoint, _attempt(500), False, window) is None
    reason = judge(store, endpoint, _attempt(500), True, window)
    assert reason is not None and "no 2XX since" in reason and "1 delivery exhausted" in reason


def test_a_2xx_resets_the_clock(endpoint):
    store, window = get_endpoints(), timedelta(seconds=0.3)
    judge(store, endpoint, _attempt(500), True, window)
    time.sleep(0.4)
    assert judge(store, endpoint, _attempt(204), False, window) is None
    # The clock starts again at the next failure, and the exhausted count is gone.
    assert judge(store, endpoint, _attempt(500), True, window) is None


def test_retry_after_forms():
    moment = now()
    assert parse_retry_after("120", moment) == 120
    date = format_datetime(moment + timedelta(seconds=90), usegmt=True)
    wait = parse_retry_after(date, moment)
    assert wait is not None and 88 <= wait <= 91
    assert parse_retry_after("soon", moment) is None
    assert parse_retry_after(None, moment) is None
    assert parse_retry_after(format_datetime(moment - timedelta(hours=1), usegmt=True), moment) == 0


def test_retry_after_lengthens_never_shortens_and_is_capped():
    policy = BackoffPolicy(base=10.0, jitter=0.0, retry_after_max=100.0)
    assert policy.after_failure(0, retry_after=30) == RetryLater(30.0)
    assert policy.after_failure(2, retry_after=5) == RetryLater(40.0, parked=True)
    assert policy.after_failure(0, retry_after=10_000) == RetryLater(100.0, parked=True)
