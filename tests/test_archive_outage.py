"""PostgreSQL stopped for 30 s while deliveries flow: delivery goes on, finished
deliveries wait in Redis (the backlog gauge counts them), the workers say so once
each way, and the backlog drains when PostgreSQL is back."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import event, missing, until
from tests.test_archive_workers import World, pg_rows, world_for
from webhooks.archive.store import Archive
from webhooks.dev.receiver import Receiver
from webhooks.dev.server import free_port
from webhooks.dev.worker import start_worker, stop_worker
from webhooks.producer import Producer

pytestmark = pytest.mark.slow


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of the test's own, which it may stop and start."""

    folder: Path
    port: int
    as_user: list[str]

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, _pg_bin("pg_ctl"), "-D", str(self.folder / "data"), "-w", *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        self.ctl(
            "-l",
            str(self.folder / "postgres.log"),
            "-o",
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def stop(self) -> None:
        self.ctl("-m", "fast", "stop")


def _pg_bin(name: str) -> str:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        missing(f"PostgreSQL's {name} is not installed (Debian's postgresql)")
    return found


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    # Not under pytest's temporary folder, which only root may enter.
    folder = Path(tempfile.mkdtemp(prefix="webhooks-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: the server runs as postgres
        if shutil.which("runuser") is None:
            missing("running PostgreSQL as root needs runuser")
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
        folder.chmod(0o755)
    subprocess.run(
        [*as_user, _pg_bin("initdb"), "-D", str(folder / "data"), "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = PrivatePostgres(folder, free_port(), as_user)
    server.start()
    yield server
    subprocess.run(
        [*as_user, _pg_bin("pg_ctl"), "-D", str(folder / "data"), "-m", "immediate", "stop"],
        capture_output=True,
        timeout=60,
    )
    shutil.rmtree(folder, ignore_errors=True)


def test_postgresql_away_for_30_seconds(
    private_postgres: PrivatePostgres, receiver: Receiver, tmp_path: Path
) -> None:
    with Archive(private_postgres.dsn, 90 * 86400) as archive:
        archive.init()
    for world in world_for(private_postgres.dsn):
        _away_for_30_seconds(world, private_postgres, receiver, tmp_path / "worker.log")


def _away_for_30_seconds(
    world: World, private_postgres: PrivatePostgres, receiver: Receiver, log: Path
) -> None:
    system = world.system
    worker = start_worker(log, world.env, "--concurrency=4")
    url = receiver.url(f"/ok/away/{time.time_ns()}")
    try:
        ids = Producer(system).deliver_many([(url, event()) for _ in range(100)])
        until(
            lambda: pg_rows(world.dsn, "SELECT count(*) FROM webhooks_deliveries") == 100,
            30,
            "the first 100 archived",
        )
        private_postgres.stop()
        away_since = time.monotonic()
        while time.monotonic() - away_since < 30:  # deliveries go on flowing
            ids += Producer(system).deliver_many([(url, event()) for _ in range(10)])
            time.sleep(1)
        delivered = {r.headers["webhook-id"] for r in receiver.received()}
        assert set(ids[:-10]) <= delivered  # delivery never waited for PostgreSQL
        backlog = system.counters.snapshot(120).archive_backlog
        assert backlog >= len(ids) - 100 - 10, backlog
        assert world.delivery_keys() >= len(ids) - 100 - 10
        private_postgres.start()
        until(lambda: system.deliveries.archive_backlog() == 0, 60, "the backlog to drain")
    finally:
        stop_worker(worker)
    total, distinct = pg_rows(
        world.dsn, "SELECT count(*), count(DISTINCT id) FROM webhooks_deliveries"
    )
    assert (total, distinct) == (len(ids), len(ids))
    assert world.delivery_keys() == 0
    text = log.read_text()
    assert text.count("PostgreSQL is away") == 1, text[-3000:]
    assert text.count("PostgreSQL is back") == 1, text[-3000:]
