"""The archive with real worker processes: workers that archive what they finish,
and an archiver SIGKILLed ten times during 5,000 deliveries (PostgreSQL away:
tests/test_archive_outage.py)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis

from tests.conftest import LANE, WORKER_ENV, database_url, event, until
from tests.test_archive import archive_database, empty_archive
from webhooks.archive.store import Archive
from webhooks.broker import messages
from webhooks.dev.receiver import Receiver
from webhooks.dev.worker import start_worker, stop_worker
from webhooks.models import FINAL_STATUSES, Run
from webhooks.producer import Producer
from webhooks.settings import Settings
from webhooks.system import System

pytestmark = pytest.mark.slow

ARCHIVED_URL = database_url(3)  # this module's Redis database
ARCHIVE_DB = "webhooks_archive_w" if LANE == "gw0" else f"webhooks_archive_w_{LANE}"


def pg_rows(dsn: str, sql: str) -> Any:
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


@dataclass
class World:
    system: System
    client: redis.Redis
    dsn: str
    env: dict[str, str]

    def delivery_keys(self) -> int:
        return sum(1 for _ in self.client.scan_iter(f"{self.system.keys.prefix}:delivery:*"))


def world_for(dsn: str, **env: str) -> Iterator[World]:
    client = redis.Redis.from_url(ARCHIVED_URL)
    client.flushdb()
    settings_env = {
        "WEBHOOKS_REDIS_URL": ARCHIVED_URL,
        "WEBHOOKS_ARCHIVE_DSN": dsn,
        "WEBHOOKS_ARCHIVE_AFTER_SECONDS": "0.2",
        "WEBHOOKS_ARCHIVE_LEASE_SECONDS": "1",
        **env,
    }
    system = System(
        Settings(
            redis_url=ARCHIVED_URL,
            archive_dsn=dsn,
            archive_after_seconds=0.2,
            archive_lease_seconds=1,
        )
    )
    yield World(system, client, dsn, {**WORKER_ENV, **settings_env})
    system.close()
    client.flushdb()
    client.close()


@pytest.fixture
def world() -> Iterator[World]:
    dsn = archive_database(ARCHIVE_DB)
    with Archive(dsn, 90 * 86400) as archive:
        archive.init()
    empty_archive(dsn)
    yield from world_for(dsn)


def test_workers_archive_what_they_finish(world: World, receiver: Receiver, tmp_path: Path) -> None:
    system = world.system
    worker = start_worker(tmp_path / "worker.log", world.env, "--concurrency=4")
    try:
        url = receiver.url(f"/fail/1/{time.time_ns()}")
        ids = Producer(system).deliver_many([(url, event()) for _ in range(300)])
        until(
            lambda: pg_rows(world.dsn, "SELECT count(*) FROM webhooks_deliveries") == 300,
            60,
            "300 archived deliveries",
        )
        until(lambda: system.deliveries.archive_backlog() == 0, 10, "the backlog to empty")
        assert world.delivery_keys() == 0
        assert pg_rows(world.dsn, "SELECT count(*) FROM webhooks_attempts") == 600
        shown = system.deliveries.get(ids[0])
        assert [a.status_code for a in shown.attempts] == [500, 200]

        # Redeliver: back in Redis, sent again with the same webhook-id.
        Producer(system).redeliver(ids[0])
        until(lambda: len(receiver.received(webhook_id=ids[0])) == 3, 20, "the redelivery")
        until(lambda: world.delivery_keys() == 0, 20, "the redelivered one to be archived again")
        again = system.deliveries.get(ids[0])
        assert [a.status_code for a in again.attempts] == [500, 200, 200]
        assert pg_rows(world.dsn, "SELECT count(*) FROM webhooks_deliveries") == 300

        # A stale message for an archived delivery is dropped, as for a missing one:
        # waited for in the worker's log, where the drop is said.
        messages.publish(system.app, [Run(ids[1], 0, 0)])
        log = tmp_path / "worker.log"
        until(
            lambda: f"delivery {ids[1]} not found" in log.read_text(),
            20,
            "the stale message to be dropped",
        )
        assert len(receiver.received(webhook_id=ids[1])) == 2
        assert not world.client.exists(system.keys.delivery(ids[1]))
    finally:
        stop_worker(worker)


def _archiver(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "webhooks", "archive", "run"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_an_archiver_killed_ten_times_loses_and_doubles_nothing(
    world: World, receiver: Receiver, tmp_path: Path
) -> None:
    system = world.system
    env = {**world.env, "WEBHOOKS_ARCHIVE_IN_WORKERS": "false", "WEBHOOKS_ARCHIVE_BATCH": "100"}
    worker = start_worker(tmp_path / "worker.log", env, "--concurrency=4")
    archivers = [_archiver(env, tmp_path / "archiver.log")]
    published: list[str] = []
    url = receiver.url(f"/ok/killed/{time.time_ns()}")

    def produce() -> None:
        for _ in range(20):
            published.extend(Producer(system).deliver_many([(url, event()) for _ in range(250)]))
            time.sleep(0.3)

    producer = threading.Thread(target=produce)
    producer.start()
    rng, kills = random.Random(22), 0
    try:
        while kills < 10:
            time.sleep(rng.uniform(0.3, 1.2))
            os.killpg(archivers[-1].pid, signal.SIGKILL)
            archivers[-1].wait()
            kills += 1
            archivers.append(_archiver(env, tmp_path / "archiver.log"))
        producer.join()
        assert len(published) == 5000

        def finished() -> bool:
            statuses = system.deliveries.statuses(published[-200:])
            return all(s is None or s in FINAL_STATUSES for s in statuses)

        until(
            lambda: pg_rows(world.dsn, "SELECT count(*) FROM webhooks_deliveries") >= 5000,
            120,
            "5,000 archived deliveries",
        )
        until(lambda: system.deliveries.archive_backlog() == 0, 20, "the backlog to empty")
        assert finished()
    finally:
        producer.join()
        archivers[-1].send_signal(signal.SIGTERM)
        archivers[-1].wait(20)
        stop_worker(worker)
    total, distinct = pg_rows(
        world.dsn, "SELECT count(*), count(DISTINCT id) FROM webhooks_deliveries"
    )
    with psycopg.connect(world.dsn) as conn:
        archived = {i for (i,) in conn.execute("SELECT id FROM webhooks_deliveries")}
    print(f"\n5,000 deliveries, {kills} SIGKILLs of the archiver: {total} rows, {distinct} ids")
    assert (total, distinct) == (5000, 5000) and archived == set(published)
    assert pg_rows(world.dsn, "SELECT count(*) FROM webhooks_attempts") == 5000
    assert pg_rows(world.dsn, "SELECT sum(count) FROM webhooks_archive_counts") == 5000
    assert world.delivery_keys() == 0
    assert world.client.zcard(system.keys.archiving()) == 0
