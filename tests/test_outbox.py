"""The transactional outbox against the machine's real PostgreSQL: what a rollback
leaves (nothing), what a commit makes (one delivery per matching endpoint, once), the
rows that cannot go, the relay woken by NOTIFY, and two relays under SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from click.testing import CliRunner

from tests.conftest import (
    LOOPBACK,
    WORKER_ENV,
    as_bytes_list,
    database_url,
    event,
    tenant_deliveries,
)
from webhooks import outbox
from webhooks.cli import main
from webhooks.dev.receiver import Receiver
from webhooks.dev.worker import start_worker, stop_worker
from webhooks.errors import InvalidInput
from webhooks.outbox.relay import drain
from webhooks.system import get_default

ROOT = Path(__file__).resolve().parent.parent
RELAYED_URL = database_url(14)  # the relay processes' store, no worker


def rows(dsn: str, failed: bool | None = None) -> list[tuple[int, str | None]]:
    where = (
        ""
        if failed is None
        else (" WHERE failed_at IS NOT NULL" if failed else " WHERE failed_at IS NULL")
    )
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            f"SELECT id, failure FROM webhooks_outbox{where} ORDER BY id"
        ).fetchall()


def test_a_rollback_leaves_nothing(outbox_dsn: str, two_endpoints: tuple[str, list[str]]) -> None:
    tenant, _ = two_endpoints
    with psycopg.connect(outbox_dsn) as conn, pytest.raises(ZeroDivisionError), conn.transaction():
        outbox.add(conn, event(), tenant=tenant)
        1 / 0  # noqa: B018  (the caller's own failure, after the add)
    assert rows(outbox_dsn) == []
    assert drain(get_default(), outbox_dsn) == 0
    assert tenant_deliveries(tenant) == []


def test_a_commit_makes_one_delivery_per_matching_endpoint_once(
    outbox_dsn: str, two_endpoints: tuple[str, list[str]]
) -> None:
    tenant, taking = two_endpoints
    sent = event()
    with psycopg.connect(outbox_dsn) as conn, conn.transaction():
        row_id = outbox.add(conn, sent, tenant=tenant)
    assert [row for row, _ in rows(outbox_dsn)] == [row_id]
    assert drain(get_default(), outbox_dsn) == 1
    assert sorted(tenant_deliveries(tenant)) == sorted((sent["id"], e) for e in taking)
    assert rows(outbox_dsn) == [] and drain(get_default(), outbox_dsn) == 0
    # The same row again (a relay killed before its delete): nothing more is made.
    with psycopg.connect(outbox_dsn) as conn, conn.transaction():
        outbox.add(conn, sent, tenant=tenant)
    assert drain(get_default(), outbox_dsn) == 1
    assert len(tenant_deliveries(tenant)) == len(taking)


def test_a_bad_event_fails_at_the_add_naming_the_field(outbox_dsn: str, tenant: str) -> None:
    with psycopg.connect(outbox_dsn) as conn, conn.transaction():
        with pytest.raises(InvalidInput) as refused:
            outbox.add(conn, {**event(), "created_at": "yesterday"}, tenant=tenant)
        assert refused.value.field == "created_at"
        with pytest.raises(InvalidInput) as refused:
            outbox.add(conn, event(), tenant="bad tenant id")
        assert refused.value.field == "tenant"
    assert rows(outbox_dsn) == []


def test_add_refuses_a_connection_it_does_not_know(tenant: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        outbox.add(object(), event(), tenant=tenant)
    assert refused.value.field == "conn"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhooks", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def _invoke(*args: str) -> subprocess.CompletedProcess[str]:
    """The command in this process, as ``_cli`` reports it: the same main(), without a
    process's seconds of imports (each test runs its first command as a process)."""
    result = CliRunner().invoke(main, list(args))
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def test_rows_that_cannot_go_are_kept_with_why(outbox_dsn: str, tenant: str) -> None:
    """A gone tenant and an event that no longer validates: marked, listed, not retried;
    `retry` gives a row back once what failed it is fixed."""
    missing = f"acct_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(outbox_dsn) as conn, conn.transaction():
        lost = outbox.add(conn, event(), tenant=missing)
        conn.execute(
            "INSERT INTO webhooks_outbox (tenant, event) VALUES (%s, %s)",
            [tenant, json.dumps({**event(), "type": "screenshot_set.vanished"})],
        )
    assert drain(get_default(), outbox_dsn) == 2
    failed = rows(outbox_dsn, failed=True)
    assert [row for row, _ in failed] == [lost, lost + 1]
    assert "TenantNotFound" in (failed[0][1] or "") and missing in (failed[0][1] or "")
    assert "InvalidEvent" in (failed[1][1] or "") and "vanished" in (failed[1][1] or "")
    assert drain(get_default(), outbox_dsn) == 0  # never retried by itself

    listed = _cli("outbox", "list", "--failed", "--json", "--dsn", outbox_dsn)
    assert listed.returncode == 0, listed.stderr
    shown = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(s["id"], s["tenant"]) for s in shown] == [(lost, missing), (lost + 1, tenant)]
    table = _invoke("outbox", "list", "--failed", "--dsn", outbox_dsn)
    assert "TenantNotFound" in table.stdout

    from webhooks.system import get_tenants

    get_tenants().add(missing, "Came back")
    try:
        again = _invoke("outbox", "retry", str(lost), "--dsn", outbox_dsn)
        assert again.returncode == 0, again.stderr
        assert drain(get_default(), outbox_dsn) == 1 and rows(outbox_dsn, failed=False) == []
        refused = _invoke("outbox", "retry", str(lost), "--dsn", outbox_dsn)
        assert refused.returncode == 1 and f"not failed rows: {lost}" in refused.stderr
    finally:
        get_tenants().delete(missing)


def test_init_creates_the_table_once_and_again(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS init_check")
        conn.execute("DROP TABLE IF EXISTS init_check.webhooks_outbox")
    scoped = f"{pg_dsn}?options=-csearch_path%3Dinit_check"
    missing = _cli("outbox", "list", "--dsn", scoped)
    assert missing.returncode == 1 and "webhooks outbox init" in missing.stderr
    for _ in range(2):  # idempotent
        done = _invoke("outbox", "init", "--dsn", scoped)
        assert done.returncode == 0 and "webhooks_outbox is ready" in done.stdout, done.stderr
    waiting = _invoke("outbox", "list", "--dsn", scoped)
    assert waiting.returncode == 0 and "no rows waiting" in waiting.stderr
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA init_check CASCADE")


def test_the_cli_refuses_a_database_in_one_line() -> None:
    nowhere = "postgresql://postgres:hunter2-secret@127.0.0.1:1/none"
    for number, args in enumerate((("init",), ("list",), ("relay",))):
        done = (_cli if number == 0 else _invoke)("outbox", *args, "--dsn", nowhere)
        assert done.returncode == 1, done
        assert done.stderr.startswith("Error: could not connect to PostgreSQL")
        assert len(done.stderr.strip().splitlines()) == 1 and "hunter2" not in done.stderr
    unset = _cli("outbox", "list", env={"WEBHOOKS_OUTBOX_DSN": ""})
    assert unset.returncode == 2 and "WEBHOOKS_OUTBOX_DSN" in unset.stderr


# --- relays as production runs them: their own processes, on a store no worker reads


@pytest.fixture
def relayed(outbox_dsn: str, receiver: Receiver) -> Iterator[tuple[str, list[str], dict[str, str]]]:
    """A tenant with two endpoints on a Redis database of its own; its env for relays."""
    client = redis.Redis.from_url(RELAYED_URL)
    client.flushdb()
    env = {"WEBHOOKS_REDIS_URL": RELAYED_URL, "WEBHOOKS_ALLOWED_NETWORKS": LOOPBACK}
    tenant = "acct_relayed"
    assert _cli("tenants", "add", tenant, env=env).returncode == 0
    endpoints = []
    for n in (1, 2):
        added = _cli(
            "endpoints",
            "add",
            receiver.url(f"/ok/relayed-{n}"),
            "--tenant",
            tenant,
            "--json",
            env=env,
        )
        assert added.returncode == 0, added.stderr
        endpoints.append(json.loads(added.stdout)["id"])
    yield tenant, endpoints, env
    client.flushdb()
    client.close()


def _relay(dsn: str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "webhooks", "outbox", "relay", "--dsn", dsn, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _made(client: redis.Redis, tenant: str) -> list[tuple[str, str]]:
    """(event id, endpoint id) of the tenant's deliveries, read from Redis directly."""
    members = client.zrange(f"webhooks:tenant:{{{tenant}}}:deliveries", 0, -1)
    ids = [i.decode() for i in as_bytes_list(members)]
    with client.pipeline(transaction=False) as pipe:
        for delivery_id in ids:
            pipe.hmget(f"webhooks:delivery:{delivery_id}", "event_id", "endpoint_id")
        return [(e.decode(), p.decode()) for e, p in pipe.execute()]


def _wait(check: Callable[[], bool], within: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > within:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def test_a_relay_wakes_on_the_commit(
    relayed: tuple[str, list[str], dict[str, str]], outbox_dsn: str
) -> None:
    """Polling every 60 s, it still relays at once: the commit's NOTIFY woke it."""
    tenant, endpoints, env = relayed
    client = redis.Redis.from_url(RELAYED_URL)
    process = _relay(outbox_dsn, env, "--poll", "60")
    try:
        time.sleep(1.5)  # connected and listening
        with psycopg.connect(outbox_dsn) as conn, conn.transaction():
            outbox.add(conn, event(), tenant=tenant)
        took = _wait(lambda: len(_made(client, tenant)) == len(endpoints), 5, "the relay")
        assert took < 2
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_relays_one_killed_again_and_again(
    relayed: tuple[str, list[str], dict[str, str]], outbox_dsn: str
) -> None:
    """1,000 events committed while two relays run and one is SIGKILLed again and again,
    mid-batch: each event ends as exactly one delivery per endpoint, each with one
    task message, and the outbox ends empty."""
    tenant, endpoints, env = relayed
    client = redis.Redis.from_url(RELAYED_URL)
    steady = _relay(outbox_dsn, env, "--batch", "50")
    victim = [_relay(outbox_dsn, env, "--batch", "50")]
    sent: list[str] = []
    kills = 0

    def commit_all() -> None:
        with psycopg.connect(outbox_dsn) as conn:
            for n in range(1000):
                with conn.transaction():
                    sent.append(str(event()["id"]))
                    outbox.add(conn, {**event(), "id": sent[-1]}, tenant=tenant)
                if n % 100 == 99:
                    time.sleep(0.05)

    producer = threading.Thread(target=commit_all)
    producer.start()
    rng = random.Random(7)
    try:
        while producer.is_alive() or rows(outbox_dsn):
            time.sleep(rng.uniform(0.05, 0.3))
            if kills < 40:
                os.killpg(victim[-1].pid, signal.SIGKILL)
                victim[-1].wait()
                kills += 1
                victim.append(_relay(outbox_dsn, env, "--batch", "50"))
            if not producer.is_alive() and kills >= 40:
                break
        producer.join()
        _wait(lambda: not rows(outbox_dsn), 60, "the outbox to empty")
    finally:
        for process in (steady, victim[-1]):
            process.terminate()
            process.wait(10)
    made = _made(client, tenant)
    # No worker runs: each delivery's first run is a message, or waits at its endpoint
    # from its creation (admission at publish: the endpoint's limit went out).
    held = sum(int(client.zcard(k)) for k in client.scan_iter("webhooks:destination:*:waiting"))
    print(
        f"\n{len(sent)} events, {kills} SIGKILLs of one relay: {len(made)} deliveries, "
        f"{len(set(made))} distinct, {client.llen('webhooks')} messages, {held} held"
    )
    assert kills >= 10
    assert Counter(made) == Counter((e, p) for e in sent for p in endpoints)
    assert client.llen("webhooks") + held == len(sent) * len(endpoints)  # one run each
    assert int(client.hget("webhooks:metrics", "created") or 0) == len(made)


@pytest.mark.slow
def test_a_worker_relays_when_given_the_dsn(
    relayed: tuple[str, list[str], dict[str, str]],
    outbox_dsn: str,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    """WEBHOOKS_OUTBOX_DSN: the worker's own relay, then its attempt, end to end."""
    tenant, endpoints, env = relayed
    worker = start_worker(
        tmp_path / "worker.log",
        {**WORKER_ENV, **env, "WEBHOOKS_OUTBOX_DSN": outbox_dsn},
        "--concurrency=1",
    )
    try:
        sent = event()
        with psycopg.connect(outbox_dsn) as conn, conn.transaction():
            outbox.add(conn, sent, tenant=tenant)
        _wait(
            lambda: (
                len(
                    [
                        r
                        for r in receiver.requests
                        if r.path.startswith("/ok/relayed-")
                        and json.loads(r.body)["id"] == sent["id"]
                    ]
                )
                == len(endpoints)
            ),
            15,
            "both endpoints to receive it",
        )
    finally:
        stop_worker(worker)


def test_an_ordering_key_goes_through_the_outbox(outbox_dsn: str, quiet_db: redis.Redis) -> None:
    system = get_default()  # the quiet database's: no worker wakes anything here
    system.tenants.add("acct_outbox_order", "Ordered")
    endpoint, _ = system.endpoints.add("http://127.0.0.1:9/order", tenant="acct_outbox_order")
    sent = [event() for _ in range(3)]
    with psycopg.connect(outbox_dsn) as conn, conn.transaction():
        for raw in sent:
            outbox.add(conn, raw, tenant="acct_outbox_order", ordering_key="set_1")
    # A bad key is refused where it is written, before the insert.
    with (
        psycopg.connect(outbox_dsn) as conn,
        conn.transaction(),
        pytest.raises(InvalidInput, match="ordering_key"),
    ):
        outbox.add(conn, event(), tenant="acct_outbox_order", ordering_key="a\nb")
    assert len(rows(outbox_dsn)) == 3
    assert drain(system, outbox_dsn) == 3
    ids, _ = system.deliveries.page(tenant="acct_outbox_order", limit=10)
    by_event = {d.event_id: d for d in system.deliveries.full(ids)}
    first, second, third = (by_event[raw["id"]] for raw in sent)
    assert first.waiting_behind is None and first.ordering_key == "set_1"
    assert second.waiting_behind == first.id and third.waiting_behind == second.id
    assert endpoint.id == first.endpoint_id
