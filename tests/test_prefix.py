"""Two deployments on one Redis database, told apart by WEBHOOKS_KEY_PREFIX alone: each
worker takes only its own deployment's messages, each `stats` counts only its own, and
no key of one starts like the other's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import WORKER_ENV, database_url, event, own_database
from webhooks.dev.receiver import Receiver
from webhooks.dev.worker import start_worker, stop_worker

ROOT = Path(__file__).resolve().parent.parent
SHARED_URL = database_url(13)  # this module's database only
PREFIXES = ("alpha", "beta")


def _env(prefix: str) -> dict[str, str]:
    return {**WORKER_ENV, "WEBHOOKS_REDIS_URL": SHARED_URL, "WEBHOOKS_KEY_PREFIX": prefix}


def _cli(prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhooks", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **_env(prefix)},
    )


def _stats(prefix: str) -> dict[str, int]:
    done = _cli(prefix, "stats", "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _wait_delivered(client: redis.Redis, prefix: str) -> None:
    # Read straight from the index (a CLI call per look would take most of the test).
    deadline = time.monotonic() + 30
    while client.zcard(f"{prefix}:deliveries:delivered") < 5 and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture
def shared(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    with own_database(13) as client:
        yield client


@pytest.mark.slow
def test_two_prefixes_on_one_database_never_meet(
    shared: redis.Redis, receiver: Receiver, tmp_path: Path
) -> None:
    sent: dict[str, list[str]] = {}
    for prefix in PREFIXES:  # each deployment's producer: one deliver_many of 5
        plan = {
            "bulk": [[receiver.url(f"/ok/prefix-{prefix}"), event()] for _ in range(5)],
            "tenant": "",
            "published": [],
        }
        done = subprocess.run(
            [sys.executable, "-m", "tests.observed", json.dumps(plan)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, **_env(prefix)},
        )
        assert done.returncode == 0, done.stderr
        sent[prefix] = json.loads(done.stdout)["bulk"]

    # Only alpha's worker runs: alpha's deliveries go, beta's all wait.
    alpha = start_worker(tmp_path / "alpha.log", _env("alpha"), "--concurrency=2")
    try:
        _wait_delivered(shared, "alpha")
        time.sleep(0.5)  # time enough to take beta's, were it to
        alpha_counts, beta_counts = _stats("alpha"), _stats("beta")
        assert (alpha_counts["delivered"], alpha_counts["pending"]) == (5, 0)
        assert (beta_counts["delivered"], beta_counts["pending"]) == (0, 5)
        beta = start_worker(tmp_path / "beta.log", _env("beta"), "--concurrency=2")
        try:
            _wait_delivered(shared, "beta")
        finally:
            stop_worker(beta)
    finally:
        stop_worker(alpha)
    for prefix in PREFIXES:
        assert _stats(prefix)["delivered"] == 5
        got = {r.headers["webhook-id"] for r in receiver.received(f"/ok/prefix-{prefix}")}
        assert got == set(sent[prefix])
    # Each delivery went once, to its own deployment's URL.
    assert (
        len(receiver.received("/ok/prefix-alpha")) == len(receiver.received("/ok/prefix-beta")) == 5
    )
    names = [key.decode() for key in shared.scan_iter()]
    assert names and all(name.startswith(("alpha:", "beta:")) for name in names), [
        name for name in names if not name.startswith(("alpha:", "beta:"))
    ]


def test_a_prefix_that_is_not_a_name_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "webhooks", "stats"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "WEBHOOKS_KEY_PREFIX": "two words"},
    )
    assert done.returncode != 0
    assert done.stderr.startswith("Error: WEBHOOKS_KEY_PREFIX: String should match pattern")
    assert len(done.stderr.splitlines()) == 1
