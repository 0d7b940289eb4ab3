"""The benchmark suite runs, at a tiny size: it proves the scenarios work, not their speed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import database_url

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_every_scenario_runs_and_reports(tmp_path, redis_client):
    out = tmp_path / "bench.json"
    bench_db = database_url(11)
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--size", "tiny", "--json", str(out)],
        cwd=ROOT,
        env={**os.environ, "WEBHOOKS_REDIS_URL": bench_db},
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    names = [row["name"][:3] for row in report["scenarios"]]
    assert names == ["(b)", "(a)", "(e)", "(c)", "(d)", "(h)", "(f)", "(g)", "(i)", "(j)", "(k)"]
    for row in report["scenarios"]:
        if "not measured" in row["target"]:  # (j) on a machine without RabbitMQ
            continue
        assert isinstance(row["values"]["ours"], float) and row["values"]["ours"] > 0, row
    assert "(a) throughput" in result.stdout  # the table was printed


def _bench(module: str, *args: str) -> str:
    """What ``python -m bench.<module> ARGS`` printed; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
def test_the_outbox_latency_benchmark_runs(pg_dsn):
    """`python -m bench.outbox`, a second's worth: it prints its three lines."""
    lines = _bench("outbox", "--rate", "50", "--seconds", "1").splitlines()
    assert lines[0].startswith("commit to first attempt, 50 of 50 events at 50/s: p50 ")
    assert "the relay" in lines[1] and "the worker" in lines[2]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_ordering_benchmark_runs():
    """`python -m bench.ordering`, at a tiny size: it prints its figures."""
    printed = _bench("ordering", "--events", "20", "--keys", "2", "--rounds", "1")
    assert "over 2 ordering keys" in printed
    assert "one key, publish to delivered, per delivery" in printed


@pytest.mark.slow
def test_the_attempt_benchmark_runs_each_way_and_delivers():
    """`python -m bench.attempt`, a few calls each: a line per way, and the runs it
    made were delivered (it stops on one that was not)."""
    printed = _bench("attempt", "--count", "30", "--rounds", "1")
    for way in (
        "requests.Session.post (the bare loop)",
        "urllib3's pool, directly",
        "Sender.attempt",
        "run_attempt (claim, attempt, record)",
    ):
        assert re.search(rf"^  \d+\.\d{{3}} ms  {re.escape(way)}  \[", printed, re.M), printed


def test_a_monitor_record_gives_back_each_argument_byte_for_byte(redis_client):
    """bench.instructions replays what MONITOR printed: every byte of an argument comes
    back as sent, escapes, quotes and non-ASCII included."""
    import uuid

    from bench.instructions import _monitoring

    key = f"bench-monitor-{uuid.uuid4().hex}"
    value = bytes(range(256)) + b'"\\ a "quoted" value\r\n'
    pool = redis_client.connection_pool.connection_kwargs
    recorded: list[list[bytes]] = []
    with _monitoring(pool["host"], pool["port"], recorded):
        redis_client.set(key, value)
        redis_client.eval("return redis.call('GET', KEYS[1])", 1, key)
    redis_client.delete(key)
    ours = [args for args in recorded if key.encode() in args]
    # The script's own GET is not recorded: replayed, the script runs it again.
    assert ours == [[b"SET", key.encode(), value], [b"EVAL", ours[1][1], b"1", key.encode()]]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_instructions_benchmark_replays_a_first_try_workload():
    """`python -m bench.instructions`, 20 deliveries: one record per delivery replayed,
    one creation for all, and a count that a delivery could not cost less than."""
    figures = json.loads(_bench("instructions", "--count", "20", "--json"))
    calls = figures["script_calls_per_delivery"]
    assert calls["record_attempt"] == 1.0 and calls["create_deliveries"] == 0.05, figures
    assert figures["instructions_per_delivery"] > 100_000, figures


def test_the_capacity_benchmark_shows_the_turn_of_the_median_and_every_turns_cpu():
    from bench.capacity import median_turn

    turns = [
        {"first_try": {"cpu_ms": cpu, "turn": n}, "retried_once": {"cpu_ms": 2 * cpu}}
        for n, cpu in enumerate([0.3, 0.2, 0.4, 0.25])
    ]
    figures = median_turn(turns)
    assert figures["first_try"] == {"cpu_ms": 0.25, "turn": 3}  # the lower middle of 4
    assert figures["turns"] == [
        {"first_try": cpu, "retried_once": 2 * cpu} for cpu in (0.3, 0.2, 0.4, 0.25)
    ]
    assert median_turn(turns[:3])["first_try"]["turn"] == 0
