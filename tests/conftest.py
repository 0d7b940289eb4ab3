"""Fixtures: a real Redis, a real Celery worker process and a real receiver on 127.0.0.1.

Time is compressed through settings only: the worker retries with a 0.5 ms base
and no jitter, and an attempt times out after 1 s.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import socket
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, cast

import pytest

#: The lane of the suite this process runs (pytest-xdist's worker: gw0, gw1, ...).
LANE = os.environ.get("PYTEST_XDIST_WORKER", "gw0")

# Must be set before webhooks reads its settings: the tests own this Redis database.
# The first lane uses the machine's Redis; each other lane a Redis server of its own,
# so that every database a module uses (15, and those derived below) is its alone.
if "WEBHOOKS_TEST_REDIS_URL" in os.environ:
    REDIS_URL = os.environ["WEBHOOKS_TEST_REDIS_URL"]
elif LANE == "gw0":
    REDIS_URL = "redis://127.0.0.1:6379/15"
else:
    from webhooks.dev.redis_server import ensure_redis as _ensure_redis
    from webhooks.dev.server import free_port as _free_port

    REDIS_URL = f"redis://127.0.0.1:{_free_port()}/15"
    _lane_redis = contextlib.ExitStack()
    _lane_redis.enter_context(_ensure_redis(REDIS_URL))
    atexit.register(_lane_redis.close)
os.environ["WEBHOOKS_REDIS_URL"] = REDIS_URL
# The receivers are on loopback, which the destination guard forbids unless allowed.
LOOPBACK = "127.0.0.0/8"
os.environ["WEBHOOKS_ALLOWED_NETWORKS"] = LOOPBACK
# The web server's tokens: the operator's, and the key that signs portal links
# (this process makes portal tokens for the server it starts).
OPERATOR_TOKEN = "operator-token-for-the-tests-only"
PORTAL_SECRET = "portal-secret-for-the-tests-only-0123456789"
os.environ["WEBHOOKS_API_TOKEN"] = OPERATOR_TOKEN
os.environ["WEBHOOKS_PORTAL_SECRET"] = PORTAL_SECRET

import redis  # noqa: E402

from tests.web import InProcess, Web  # noqa: E402
from webhooks.dev.receiver import Receiver  # noqa: E402
from webhooks.dev.redis_server import ensure_redis  # noqa: E402
from webhooks.dev.server import start_server, stop_server  # noqa: E402
from webhooks.dev.worker import start_worker, stop_worker  # noqa: E402
from webhooks.models import FINAL_STATUSES, Delivery, DeliveryStatus  # noqa: E402
from webhooks.storage.keys import Keys  # noqa: E402
from webhooks.system import System, get_default, get_store, set_default  # noqa: E402

if TYPE_CHECKING:
    from kombu.transport import pyamqp

# This process's System, built from the environment above: its event modules (the
# catalog) register the event types the tests send.
get_default()

# The machine's RabbitMQ, for the tests that run a worker on it as the broker.
RABBITMQ = os.environ.get("WEBHOOKS_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")


#: With CI set, a test whose service or tool is missing fails: CI must provide it.
IN_CI = bool(os.environ.get("CI"))


def missing(reason: str) -> NoReturn:
    """What a test needs is not here: it skips, saying why, on a developer's machine,
    and fails in CI (``CI`` set), where a skipped test would hide a gap."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def import_or_missing(module: str) -> Any:
    """``module``, imported; or :func:`missing` when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing(f"{module} is not installed (the dev extra has it)")


def _rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def rabbitmq() -> str:
    """The machine's RabbitMQ URL, or :func:`missing`."""
    if not _rabbitmq_answers():
        missing("no RabbitMQ answers at 127.0.0.1:5672")
    return RABBITMQ


NEEDS_RABBITMQ = pytest.mark.usefixtures("rabbitmq")


def forget_queue(name: str) -> None:
    """Delete a RabbitMQ queue and its exchange: a run starts on an empty quorum queue,
    and one declared by an earlier version (classic, direct) cannot be redeclared."""
    from kombu import Connection

    with Connection(RABBITMQ) as connection:
        channel = cast("pyamqp.Channel", connection.default_channel)  # an amqp:// URL's
        channel.queue_delete(name)
        channel.exchange_delete(name)


#: Fixtures that start processes (Celery workers, ``webhooks serve``, a browser, Redis
#: servers of their own, a Sentinel set) or talk to RabbitMQ: a test that uses one,
#: directly or through another fixture, is marked slow and left out of the fast tier
#: (``pytest -m "not slow"``). Tests that start such processes themselves carry the
#: mark in their own module.
SLOW_FIXTURES = frozenset(
    {
        "worker",
        "web",
        "guard_workers",
        "isolation_worker",
        "tls_worker",
        "run",
        "browser",
        "topology",
        "own_redis",
        "example",
        "rabbit_env",
        "rabbitmq",
    }
)


#: The test files that take longest, longest first: each takes 20 s or more alone
#: (the sum of its tests' setup, call and teardown in ``pytest -n 0 --durations``, one
#: file at a time, 2026-12-06, load average 3 to 24: ratios, not figures). The lanes
#: take whole files in collection order (``--dist loadfile --no-loadscope-reorder``
#: in pyproject.toml), so these are sorted to the front and the short files even out
#: the lanes' ends. pytest-xdist's own order (the files with most tests first) put
#: the long files of one or two tests (the fuzzer, the archiver's, PostgreSQL away,
#: 100,000 retries, ordering) last, where one lane ran on alone.
LONGEST_FIRST = (
    "test_reliability.py",  # 97 s: a 30 s Redis stall, a restart, Redis servers of its own
    "test_archive_workers.py",  # 96 s: 5,000 deliveries, the archiver SIGKILLed ten times
    "test_openapi_fuzz.py",  # 88 s: schemathesis against a real server
    "test_drain.py",  # 85 s: six workers, on each broker
    "test_durability.py",  # 77 s: the chaos runs, on each broker
    "test_scale.py",  # 67 s: 100,000 waiting retries
    "test_extras.py",  # 67 s: pip install . into a fresh venv
    "test_bench.py",  # 66 s: every benchmark scenario, at the tiny size
    "test_sentinel.py",  # 62 s: a failover with 500 deliveries under way
    "test_crashes.py",  # 60 s
    "test_rate.py",  # 54 s: 600 deliveries at 20/s
    "test_archive_outage.py",  # 52 s: PostgreSQL away for 30 s
    "test_flower.py",  # 38 s
    "test_pacing.py",  # 34 s
    "test_archive.py",  # 34 s
    "test_outbox.py",  # 34 s
    "test_layout.py",  # 33 s
    "test_ordering_workers.py",  # 33 s
    "test_observability.py",  # 29 s
    "test_pages.py",  # 28 s
    "test_egress.py",  # 27 s
    "test_cli.py",  # 26 s
    "test_delivery.py",  # 25 s
    "test_test_events.py",  # 24 s
    "test_endpoints.py",  # 23 s
    "test_ordering_held.py",  # 22 s
    "test_secrets.py",  # 21 s
    "test_guard.py",  # 21 s
    "test_demo.py",  # 20 s
    "test_tenants.py",  # 20 s
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    # Then the files with most slow tests (processes started: seconds each) first.
    place = {name: number for number, name in enumerate(LONGEST_FIRST)}
    slow = Counter(item.path.name for item in items if item.get_closest_marker("slow"))
    items.sort(  # stable, and one key per file: each file stays whole
        key=lambda item: (place.get(item.path.name, len(place)), -slow[item.path.name])
    )


WORKER_ENV = {
    "WEBHOOKS_REDIS_URL": REDIS_URL,
    "WEBHOOKS_RETRY_BASE_SECONDS": "0.0005",
    "WEBHOOKS_RETRY_JITTER": "0",
    "WEBHOOKS_TIMEOUT_SECONDS": "1",
    "WEBHOOKS_CONNECT_TIMEOUT_SECONDS": "1",
    "WEBHOOKS_ALLOWED_NETWORKS": LOOPBACK,
    # Waits over 0.1 s are parked in Redis and promoted, so most retries in the
    # suite take that path; a claim lapses after 3 s instead of 2 minutes.
    "WEBHOOKS_PARK_THRESHOLD_SECONDS": "0.1",
    "WEBHOOKS_RECOVERY_SECONDS": "3",
    # Every test receiver is one destination (127.0.0.1:port), so the shared worker
    # lifts the per-destination limits; tests/test_isolation.py sets its own.
    "WEBHOOKS_DESTINATION_CONCURRENCY": "1000",
    "WEBHOOKS_BREAKER_FAILURES": "1000000",
    # One test's 429s would pace every other test's deliveries to that receiver:
    # tests/test_pacing.py and tests/test_rate.py turn it on for their own workers.
    "WEBHOOKS_ADAPTIVE_PACING": "false",
    # Compressed endpoint-health clock: 3 s without a 2XX (and an exhausted
    # delivery) disables an endpoint, instead of 5 days.
    "WEBHOOKS_DISABLE_AFTER_SECONDS": "3",
}


def as_bytes(reply: object) -> bytes:
    """One value read with a test client: bytes, as ``decode_responses`` is off (redis-py's
    types also allow ``str``, for clients that decode)."""
    return cast(bytes, reply)


def as_bytes_list(reply: Iterable[object]) -> list[bytes]:
    """The members of a list, set or sorted-set (no scores) read with a test client, in
    their order: bytes, as for :func:`as_bytes`."""
    return cast(list[bytes], list(reply))


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    with ensure_redis(REDIS_URL):
        client = redis.Redis.from_url(REDIS_URL)
        client.flushdb()
        yield client
        client.close()


@pytest.fixture(scope="session")
def worker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker") / "worker.log"


@pytest.fixture(scope="session")
def worker(redis_client: redis.Redis, worker_log: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = start_worker(worker_log, WORKER_ENV, "--concurrency=4")
    yield process
    stop_worker(process)


@pytest.fixture(scope="session")
def web(redis_client: redis.Redis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """A real ``webhooks serve`` process on this Redis, for the API and the pages."""
    log = tmp_path_factory.mktemp("web") / "serve.log"
    process, base = start_server(
        log,
        {
            **WORKER_ENV,
            "WEBHOOKS_API_TOKEN": OPERATOR_TOKEN,
            "WEBHOOKS_PORTAL_SECRET": PORTAL_SECRET,
        },
    )
    yield Web(base, OPERATOR_TOKEN, log)
    stop_server(process)


@pytest.fixture
def api(redis_client: redis.Redis) -> InProcess:
    """The application ``webhooks serve`` runs, called in this process (the fast tier's
    way to every route): the same interface as ``web``."""
    return InProcess(get_default(), OPERATOR_TOKEN)


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@contextlib.contextmanager
def own_destination() -> Iterator[Receiver]:
    """A receiver on a port of its own, and so a destination of its own: what an earlier
    test's receiver on the same port left of its destination in this lane's database
    (its breaker, slots and queues) is deleted first. A breaker left there carried its
    workers' limit, which set the admission bound of the next destination at that port
    (CI: 7 runs let out of 8 where the bound was 3)."""
    from webhooks.storage.destinations import destination

    with Receiver() as receiver:
        names, dest = keys(), destination(receiver.url("/"), None)
        with redis.Redis.from_url(REDIS_URL) as client:
            client.delete(
                *(
                    name(dest)
                    for name in (
                        names.destination_inflight,
                        names.destination_breaker,
                        names.destination_waiting,
                        names.destination_admitted,
                        names.destination_admit,
                        names.destination_paced,
                        names.destination_throttled,
                    )
                )
            )
        yield receiver


@pytest.fixture
def own_receiver() -> Iterator[Receiver]:
    with own_destination() as receiver:
        yield receiver


def until(check: Callable[[], object], seconds: float, failure: str) -> None:
    """Poll ``check`` until it holds, failing with ``failure`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)


@pytest.fixture
def wait_for() -> Callable[..., Delivery]:
    def wait(
        delivery_id: str, until: Callable[[Delivery], bool] | None = None, timeout: float = 30
    ) -> Delivery:
        """Poll the store until ``until`` holds (by default: a final status)."""
        check = until or (lambda d: d.status in FINAL_STATUSES)
        deadline = time.monotonic() + timeout
        while True:
            delivery = get_store().get(delivery_id)
            if check(delivery):
                return delivery
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting; last seen: {delivery.model_dump()}")
            time.sleep(0.02)

    return wait


QUEUE = "refusal-check"  # no worker consumes it, so every published message stays countable


@pytest.fixture
def counts(redis_client: redis.Redis) -> Iterator[Callable[[], tuple[int, int]]]:
    """(messages waiting in QUEUE, delivery records): both must stay put on a refusal."""
    store = get_store()
    redis_client.delete(QUEUE)
    since = time.time()

    def ours() -> list[str]:
        ids = [
            raw.decode()
            for raw in as_bytes_list(redis_client.zrangebyscore(keys().deliveries(), since, "+inf"))
        ]
        routes = store.routes(ids)
        return [
            delivery_id
            for delivery_id, (queue, _) in zip(ids, routes, strict=True)
            if queue == QUEUE
        ]

    def snapshot() -> tuple[int, int]:
        # Deliveries accepted into QUEUE are never run; out of the overdue index,
        # the worker's backstop cannot publish them into QUEUE again mid-test.
        if accepted := ours():
            redis_client.zrem(keys().due(), *accepted)
        # Every record is written with its index entry in one transaction.
        return int(redis_client.llen(QUEUE)), int(redis_client.zcard(keys().deliveries()))

    yield snapshot
    store.delete_many(ours())
    redis_client.delete(QUEUE)


@pytest.fixture
def tenant(redis_client: redis.Redis) -> Iterator[str]:
    """A tenant of the test's own; deleted afterwards, with all it owns."""
    from webhooks.errors import TenantNotFound
    from webhooks.system import get_tenants

    tenant_id = f"acct_{uuid.uuid4().hex[:10]}"
    get_tenants().add(tenant_id, "A test customer")
    yield tenant_id
    with contextlib.suppress(TenantNotFound):
        get_tenants().delete(tenant_id)


def database_url(number: int) -> str:
    """The URL of database ``number`` of this lane's Redis (a module's own)."""
    return REDIS_URL.rsplit("/", 1)[0] + f"/{number}"


@contextlib.contextmanager
def own_database(number: int) -> Iterator[redis.Redis]:
    """A client of database ``number`` of this lane's Redis, for one module's tests:
    empty before, flushed after."""
    client = redis.Redis.from_url(database_url(number))
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


def keys() -> Keys:
    """The key names of this process's default System."""
    return get_default().keys


QUIET_URL = database_url(9)  # a database no worker uses


def _swap_default(system: System | None) -> System | None:
    """Make ``system`` this process's default (as a test's own), returning the old one."""
    return set_default(system)


@pytest.fixture
def quiet_db(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """This process's System on a database of its own, which no worker touches, so that
    DBSIZE counts only what the test writes (processes it starts use it too)."""
    client = redis.Redis.from_url(QUIET_URL)
    client.flushdb()
    monkeypatch.setenv("WEBHOOKS_REDIS_URL", QUIET_URL)
    previous = _swap_default(System())
    yield client
    monkeypatch.undo()
    _swap_default(previous)
    client.flushdb()
    client.close()


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Change WEBHOOKS_* settings of this process for one test: each change makes a new
    default System from the environment."""
    previous = get_default()

    def change(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"WEBHOOKS_{name.upper()}", value)
        _swap_default(System())

    yield change
    monkeypatch.undo()
    _swap_default(previous)


@pytest.fixture
def other_event_type() -> Iterator[str]:
    """A second event type, registered for one test: ``order.shipped``."""
    from typing import Literal

    from pydantic import BaseModel

    from webhooks.events import EVENT_TYPES, Event, event_type

    class Shipped(BaseModel):
        order_id: str

    @event_type("order.shipped")
    class OrderShipped(Event):
        type: Literal["order.shipped"]
        data: Shipped

    yield "order.shipped"
    del EVENT_TYPES["order.shipped"]


def stored(
    raw_event: dict[str, object],
    targets: list[tuple[str, str | None]],
    queue: str | None = None,
    tenant: str | None = None,
) -> list[Delivery]:
    """Deliveries written to the store without their messages: for tests that publish
    (or withhold) the messages themselves."""
    from webhooks.events import parse_event
    from webhooks.producer import Producer, new_delivery

    parsed = parse_event(raw_event)
    deliveries = [
        new_delivery(parsed, url, endpoint_id, queue=queue, tenant_id=tenant)
        for url, endpoint_id in targets
    ]
    get_store().create_many(deliveries, Producer(get_default()).encode_checked(parsed))
    return deliveries


def created(url: str, count: int, queue: str) -> list[str]:
    """``count`` deliveries of their own events to ``url`` on ``queue``, as deliver_many
    writes them (admission at their destination included); their ids, in order."""
    from webhooks.events import parse_event
    from webhooks.producer import Producer, new_delivery

    producer = Producer(get_default())
    deliveries, bodies = [], []
    for _ in range(count):
        parsed = parse_event(event())
        deliveries.append(new_delivery(parsed, url, queue=queue))
        bodies.append(producer.encode_checked(parsed))
    return producer._create_and_enqueue(deliveries, bodies, queue)


def event(**overrides: object) -> dict[str, Any]:
    """A valid screenshot_set.approved event with an id of its own (creating deliveries
    is idempotent by event id); keyword arguments replace top-level keys."""
    base: dict[str, Any] = {
        "id": f"evt_{uuid.uuid4().hex[:16]}",
        "type": "screenshot_set.approved",
        "created_at": "2026-11-26T10:00:00Z",
        "data": {
            "screenshot_set": {
                "id": "set_1",
                "screenshots": [
                    {
                        "id": "shot_1",
                        "status": "uploaded",
                        "download_url": "https://cdn.example.com/shot_1.png",
                        "site_url": "https://news.example.com/",
                        "ad": {"id": "ad_1", "status": "uploaded"},
                    },
                    {
                        "id": "shot_2",
                        "status": "no_slots_found",
                        "ad": {"id": "ad_2", "status": "uploaded"},
                    },
                ],
            }
        },
    }
    return {**base, **overrides}


__all__ = ["QUEUE", "QUIET_URL", "REDIS_URL", "DeliveryStatus", "event", "stored"]


PG_ADMIN = os.environ.get("WEBHOOKS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DATABASE = "webhooks_test" if LANE == "gw0" else f"webhooks_test_{LANE}"  # a lane's own


@pytest.fixture(scope="session")
def pg_dsn() -> str:
    """The tests' own PostgreSQL database, with the outbox table; skips, saying why, when
    no PostgreSQL answers (`.ci/run` starts the machine's)."""
    psycopg = import_or_missing("psycopg")
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
            if not admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [PG_DATABASE]
            ).fetchone():
                admin.execute(f"CREATE DATABASE {PG_DATABASE}")
    except psycopg.OperationalError as error:
        missing(f"PostgreSQL at {PG_ADMIN} is not reachable: {str(error).strip().splitlines()[0]}")
    dsn = PG_ADMIN.rsplit("/", 1)[0] + "/" + PG_DATABASE
    from webhooks.outbox import DDL

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)
    return dsn


@pytest.fixture
def outbox_dsn(pg_dsn: str) -> Iterator[str]:
    """The database with an empty outbox, emptied again afterwards."""
    import psycopg

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE webhooks_outbox RESTART IDENTITY")
    yield pg_dsn
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE webhooks_outbox RESTART IDENTITY")


def tenant_deliveries(tenant: str) -> list[tuple[str, str | None]]:
    """(event id, endpoint id) of every delivery of the tenant, from this process's store."""
    ids, _ = get_store().page(tenant=tenant, limit=10_000)
    return [(d.event_id, d.endpoint_id) for d, _ in get_store().summaries(ids)]


@pytest.fixture
def two_endpoints(tenant: str, receiver: Receiver) -> tuple[str, list[str]]:
    """A tenant with two endpoints that take the event and one that does not."""
    from webhooks.system import get_endpoints

    store = get_endpoints()
    taking = [store.add(receiver.url(f"/ok/outbox-{n}"), tenant=tenant)[0].id for n in (1, 2)]
    other, _ = store.add(receiver.url("/ok/outbox-off"), tenant=tenant)
    store.disable(other.id, "not this one")  # a disabled endpoint matches no event
    return tenant, taking
