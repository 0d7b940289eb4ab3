"""Redis Sentinel: the primary is SIGKILLed with 500 deliveries under way, the sentinels
promote its replica, and workers, their promoters, a producer and ``webhooks serve``
carry on against the new primary by themselves.

What the replica had not received when the primary died is lost: Redis replicates
asynchronously. The primary runs with ``min-replicas-max-lag 2`` (and
``min-replicas-to-write 1``), the README's setting, which bounds that window: a
delivery can vanish only if it was accepted in the last 2 s before the crash, and
an attempt is made twice only if it was recorded then. The test counts both.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
import redis
import redis.sentinel
import requests
from pydantic import ValidationError

from tests.conftest import OPERATOR_TOKEN, PORTAL_SECRET, WORKER_ENV, event, until
from tests.producer import Producer
from webhooks.dev.receiver import Receiver
from webhooks.dev.redis_server import RedisProcess, SentinelProcess
from webhooks.dev.server import start_server, stop_server
from webhooks.dev.worker import start_worker, stop_worker
from webhooks.models import FINAL_STATUSES
from webhooks.settings import SentinelURL, Settings
from webhooks.system import System

if TYPE_CHECKING:
    from webhooks.broker.transport import SentinelChannel

ROOT = Path(__file__).resolve().parent.parent
MASTER = "webhooks-primary"
LAG_BOUND = 2  # seconds: min-replicas-max-lag
PATH = "/fail/2"  # every delivery takes three attempts
FIRST, AFTER = 500, 50


class Topology:
    """A primary, its replica and three sentinels, each a real redis-server."""

    def __init__(self, workdir: Path) -> None:
        for name in ("primary", "replica", "sentinels"):
            (workdir / name).mkdir()
        self.primary = RedisProcess(
            workdir / "primary",
            "--min-replicas-to-write",
            "1",
            "--min-replicas-max-lag",
            str(LAG_BOUND),
        )
        self.replica = RedisProcess(workdir / "replica")
        self.sentinels = [
            SentinelProcess(workdir / "sentinels", MASTER, self.primary.port) for _ in range(3)
        ]
        self.replica.extra = ("--replicaof", "127.0.0.1", str(self.primary.port))

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"sentinel://{hosts}/0?master={MASTER}"

    def start(self) -> None:
        self.primary.start()
        self.replica.start()
        replica = redis.Redis(port=self.replica.port)
        until(
            lambda: replica.info("replication").get("master_link_status") == "up",
            10,
            "the replica never synced",
        )
        for sentinel in self.sentinels:
            sentinel.start()

        def agreed() -> bool:
            for sentinel in self.sentinels:
                # redis-py's types allow a bool (what its Sentinel wrapper answers without
                # return_responses); a plain client gets the parsed state.
                state = cast(
                    dict[str, Any], redis.Redis(port=sentinel.port).sentinel_master(MASTER)
                )
                if state["num-slaves"] != 1 or state["num-other-sentinels"] != 2:
                    return False
            return True

        until(agreed, 20, "the sentinels never found the replica and each other")

    def master_port(self) -> int | None:
        try:
            _, port = redis.sentinel.Sentinel(
                [("127.0.0.1", s.port) for s in self.sentinels], socket_timeout=0.5
            ).discover_master(MASTER)
        except redis.RedisError:
            return None
        return int(port)

    def stop(self) -> None:
        for process in (*self.sentinels, self.replica, self.primary):
            process.stop()


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    running = Topology(tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def own_receiver() -> Iterator[Receiver]:
    """A receiver of this test's own: the session's holds every earlier test's requests,
    which each look through (here every 50 ms) would walk."""
    with Receiver() as running:
        yield running


def _delivered_by_now(receiver: Receiver) -> int:
    per_id = collections.Counter(r.headers["webhook-id"] for r in receiver.received(PATH))
    return sum(1 for count in per_id.values() if count >= 3)


@pytest.mark.timeout(150)
def test_failover_with_500_deliveries_under_way(
    topology: Topology, own_receiver: Receiver, tmp_path: Path
) -> None:
    receiver = own_receiver
    env = {
        **WORKER_ENV,
        "WEBHOOKS_REDIS_URL": topology.url,
        # 0.05, 0.1 s waits go out as ETA messages, 0.2 s ones are parked.
        "WEBHOOKS_RETRY_BASE_SECONDS": "0.05",
        "WEBHOOKS_VISIBILITY_TIMEOUT_SECONDS": "3",
        # A message lost with the primary is found by the backstop 2 x 2 s late.
        "WEBHOOKS_RECOVERY_SECONDS": "2",
    }
    with ThreadPoolExecutor() as starting:  # each takes a few seconds to be ready
        started_workers = [
            starting.submit(
                start_worker,
                tmp_path / f"worker{n}.log",
                env,
                "--concurrency=4",
                "-n",
                f"failover{n}@%h",
            )
            for n in range(2)
        ]
        started_server = starting.submit(
            start_server,
            tmp_path / "serve.log",
            {**env, "WEBHOOKS_API_TOKEN": OPERATOR_TOKEN, "WEBHOOKS_PORTAL_SECRET": PORTAL_SECRET},
        )
    workers = [future.result() for future in started_workers]
    server, base = started_server.result()
    producer = Producer(env)
    first_port = topology.master_port()
    try:
        producer.send(receiver.url(PATH), [event() for _ in range(FIRST)])
        before = producer.wait(FIRST, 60)
        # Mid-way: some delivered, most between attempts (ETA messages, parked retries,
        # claims held).
        until(lambda: _delivered_by_now(receiver) >= 50, 60, "the workers never got going")
        killed_at = time.time()
        topology.primary.kill()
        started = time.monotonic()
        until(
            lambda: topology.master_port() not in (None, first_port),
            30,
            "the sentinels did not promote the replica",
        )
        promoted_in = time.monotonic() - started
        # The same producer process, which never restarted, goes on publishing.
        producer.send(receiver.url(PATH), [event() for _ in range(AFTER)])
        accepted = producer.wait(FIRST + AFTER, 60)
        assert all("id" in line for line in accepted), [a for a in accepted if "id" not in a]
        ids = [str(line["id"]) for line in accepted]

        master_port = topology.master_port()
        assert master_port is not None  # the sentinels promoted the replica, above
        client = redis.Redis(port=master_port, socket_timeout=5)
        store = System(client=client).deliveries
        deadline = time.monotonic() + 60
        while True:
            statuses = store.statuses(ids)
            open_ = [
                i
                for i, s in zip(ids, statuses, strict=True)
                if s is not None and s not in FINAL_STATUSES
            ]
            if not open_:
                break
            assert time.monotonic() < deadline, (len(open_), collections.Counter(statuses))
            time.sleep(0.25)
        settled_in = time.monotonic() - started
        stats = store.stats(overdue_after=float(env["WEBHOOKS_RECOVERY_SECONDS"]))

        # serve reconnected as well: its numbers are the new primary's.
        answer = requests.get(
            f"{base}/api/v1/stats",
            timeout=10,
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["delivered"] == stats["delivered"]
        assert requests.get(f"{base}/healthz", timeout=10).status_code == 200
        assert all(worker.poll() is None for worker in workers), "a worker exited"
    finally:
        producer.close()
        stop_server(server)
        for worker in workers:
            stop_worker(worker)

    # Before the crash: how far the 500 had got.
    posts = collections.defaultdict(list)
    for received in receiver.received(PATH):
        posts[received.headers["webhook-id"]].append(received.at)
    unfinished = sum(
        1 for line in before if len([at for at in posts[str(line["id"])] if at < killed_at]) < 3
    )
    assert unfinished >= 100, f"only {unfinished} deliveries were under way at the crash"

    # Lost: accepted, then gone with the primary. Only the last LAG_BOUND seconds can be.
    lost = [line for line, status in zip(accepted, statuses, strict=True) if status is None]
    window = [line for line in before if float(str(line["at"])) >= killed_at - LAG_BOUND]
    assert {str(line["id"]) for line in lost} <= {str(line["id"]) for line in window}, lost
    survived = len(ids) - len(lost)
    assert collections.Counter(statuses)[None] == len(lost)
    assert stats["overdue"] == 0
    # Repeated: attempts made again because their record was lost, or cut by the crash.
    repeated = sum(max(0, len(posts[i]) - 3) for i in ids)
    near = sum(
        1
        for times in posts.values()
        for at in times
        if killed_at - LAG_BOUND <= at <= killed_at + promoted_in + 1
    )
    assert repeated <= near, (repeated, near)
    print(
        f"\nsentinel failover: {len(ids)} accepted ({FIRST} before the SIGKILL, {unfinished} "
        f"of them unfinished), replica promoted in {promoted_in:.1f} s; {survived} ended "
        f"delivered or retries_exhausted {settled_in:.1f} s after the crash, {len(lost)} "
        f"lost (bound: the {len(window)} accepted in the last {LAG_BOUND} s), {repeated} "
        f"attempts repeated ({near} POSTs in the window), 0 overdue"
    )


def test_a_sentinel_url_is_read_into_the_store_and_broker_settings() -> None:
    url = (
        "sentinel://10.0.0.1:26379,sentinel-b,[::1]:26380/3?master=main"
        "&password=p%40ss&sentinel_password=s3"
    )
    read = SentinelURL.parse(url)
    assert read == SentinelURL(
        (("10.0.0.1", 26379), ("sentinel-b", 26379), ("::1", 26380)), "main", 3, None, "p@ss", "s3"
    )
    assert read.kombu_url() == (
        "sentinel://:p%40ss@10.0.0.1:26379/3;"
        "sentinel://:p%40ss@sentinel-b:26379/3;"
        "sentinel://:p%40ss@[::1]:26380/3"
    )
    config = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from webhooks.broker import config as c; "
            "print(json.dumps([c.broker_url, c.broker_transport, c.broker_transport_options]))",
        ],
        cwd=ROOT,
        env={**os.environ, "WEBHOOKS_REDIS_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    broker_url, transport, options = json.loads(config.stdout)
    assert broker_url == read.kombu_url()
    assert transport == "webhooks.broker.transport:SentinelTransport"
    assert options["master_name"] == "main"
    assert options["sentinel_kwargs"]["password"] == "s3"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sentinel://a:1/0", "?master=NAME"),
        ("sentinel:///0?master=m", "names at least one sentinel"),
        ("sentinel://a:port/0?master=m", "'a:port' is not host:port"),
        ("sentinel://a:70000/0?master=m", "'a:70000' is not host:port"),
        ("sentinel://a/zero?master=m", "must be a number, not 'zero'"),
        ("sentinel://a?master=m&sentinel_pass=x", "unknown sentinel:// option 'sentinel_pass'"),
        ("sentinel://:secret@a?master=m", "as ?password="),
        ("http://a:6379/0", "must start with one of redis://"),
    ],
)
def test_a_bad_redis_url_is_refused_naming_the_setting(url: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(redis_url=url)
    assert refused.value.errors()[0]["loc"] == ("redis_url",)
    assert message in str(refused.value)


def test_the_cli_hides_sentinel_passwords() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "webhooks", "stats"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "WEBHOOKS_REDIS_TIMEOUT_SECONDS": "0.2",
            "WEBHOOKS_REDIS_URL": "sentinel://127.0.0.1:1/0?master=m"
            "&password=hunter2&sentinel_password=hunter3",
        },
    )
    assert done.returncode == 1
    assert done.stderr.startswith(
        "Error: Redis at sentinel://127.0.0.1:1/0?master=m"
        "&password=***&sentinel_password=*** failed"
    ), done.stderr
    assert "hunter" not in done.stderr


def test_the_broker_channel_reaches_the_primary_after_its_connection_closed(
    topology: Topology,
) -> None:
    # kombu builds pools from a closed connection (to put unacknowledged messages back,
    # and for acks that come after a reconnect): the channel keeps the sentinels.
    from kombu import Connection

    from webhooks.broker.transport import SentinelTransport

    read = SentinelURL.parse(topology.url)
    connection = Connection(
        read.kombu_url(), transport=SentinelTransport, transport_options={"master_name": MASTER}
    )
    channel = cast("SentinelChannel", connection.channel())  # SentinelTransport's
    with channel.conn_or_acquire() as client:  # what acks and restores go through
        assert client.ping()
    transport = channel.connection
    transport.client = None  # as kombu's Connection._do_close_transport leaves it
    pool = channel._get_pool()
    assert redis.Redis(connection_pool=pool).info("replication")["role"] == "master"
    assert pool.connection_kwargs.get("db", 0) == 0
    with pytest.raises(redis.ConnectionError, match="closed"):
        channel._get_pool(asynchronous=True)
    channel._sentinel_manager.close()
    connection.release()
