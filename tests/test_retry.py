"""The retry policy and the Celery settings that depend on it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from webhooks.retry import MAX_RETRIES, BackoffPolicy, RetriesExhausted, RetryLater
from webhooks.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_default_schedule_adds_up_to_about_24_hours():
    policy = BackoffPolicy.from_settings(Settings())
    rows = policy.schedule()
    assert len(rows) == MAX_RETRIES == 14
    total = sum(row.wait for row in rows)
    assert 22 * 3600 <= total <= 26 * 3600
    assert rows[-1].elapsed == pytest.approx(total)


def test_readme_states_the_real_sum_and_schedule():
    readme = (ROOT / "README.md").read_text()
    total = sum(row.wait for row in BackoffPolicy.from_settings(Settings()).schedule())
    assert f"{round(total):,} s" in readme
    for row in BackoffPolicy.from_settings(Settings()).schedule():
        assert re.search(rf"\|\s*{row.attempt}\s*\|", readme), row


def test_waits_double_and_the_15th_failure_exhausts():
    policy = BackoffPolicy(base=2.0, jitter=0.0)
    assert [policy.after_failure(n) for n in range(4)] == [
        RetryLater(2.0),
        RetryLater(4.0),
        RetryLater(8.0),
        RetryLater(16.0),
    ]
    assert policy.after_failure(13) == RetryLater(2.0 * 2**13, parked=True)
    assert policy.after_failure(14) == RetriesExhausted(attempts=15)


def test_on_rabbitmq_every_wait_of_a_second_or_more_waits_in_the_broker():
    policy = BackoffPolicy.from_settings(Settings(broker_url="amqp://guest:guest@127.0.0.1//"))
    assert policy.native_delays
    assert [policy.wait(w).parked for w in (0.001, 1.4, 1.5, 60, 12 * 3600)] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert not BackoffPolicy.from_settings(Settings()).native_delays


def test_jitter_stays_within_its_fraction():
    policy = BackoffPolicy(base=10.0, jitter=0.1)
    waits = {policy.after_failure(3).countdown for _ in range(500)}  # type: ignore[union-attr]
    assert min(waits) >= 72 and max(waits) <= 88
    assert len(waits) > 100  # it does vary


def test_no_cap_shortens_the_longest_wait():
    # Celery's retry_backoff_max (600 s by default) only applies to autoretry_for;
    # the policy hands Celery the full countdown.
    policy = BackoffPolicy.from_settings(Settings())
    assert policy.after_failure(13).countdown > 10 * 3600  # type: ignore[union-attr]


def test_visibility_timeout_outlasts_what_a_worker_holds():
    from webhooks.broker.config import PREFETCH, celery_config

    settings = Settings()
    celeryconfig = celery_config(settings)
    held = settings.park_threshold_seconds + (PREFETCH + 1) * settings.timeout_seconds
    timeout = celeryconfig["broker_transport_options"]["visibility_timeout"]
    assert held < timeout <= 180  # short, because long waits are parked in Redis
    assert BackoffPolicy.from_settings(settings).wait(held).parked
    assert celeryconfig["task_acks_late"] and celeryconfig["task_reject_on_worker_lost"]
    assert celeryconfig["accept_content"] == ["json"]


@pytest.mark.parametrize(
    ("broker", "emulated"),
    [
        ("redis://127.0.0.1:6379/0", False),
        ("rediss://redis.example.com:6380/0", None),  # kombu's transport, emulation and all
        ("sentinel://10.0.0.1:26379/0?master=main", False),
        ("amqp://guest:guest@127.0.0.1:5672//", None),  # acknowledgements are AMQP's own
    ],
)
def test_kombu_emulates_no_acknowledgements_on_redis(broker: str, emulated: bool | None):
    from webhooks.broker.config import celery_config

    options = celery_config(Settings(broker_url=broker))["broker_transport_options"]
    assert options.get("ack_emulation") is emulated


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("WEBHOOKS_RETRY_BASE_SECONDS", "0.5")
    monkeypatch.setenv("WEBHOOKS_RETRY_JITTER", "0")
    monkeypatch.setenv("WEBHOOKS_TIMEOUT_SECONDS", "3")
    settings = Settings()
    assert (settings.retry_base_seconds, settings.retry_jitter, settings.timeout_seconds) == (
        0.5,
        0.0,
        3.0,
    )
    monkeypatch.setenv("WEBHOOKS_RETRY_JITTER", "1.5")
    with pytest.raises(ValueError, match="retry_jitter"):
        Settings()
