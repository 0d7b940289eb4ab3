"""The delivery log's two tiers against a real Redis and the machine's PostgreSQL:
every view the same before and after finished deliveries move to the archive,
nothing left behind in Redis, idempotency that outlives the record, redeliver and
recover from the archive, tenant deletion, lookup by event id, and bad settings."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import psycopg
import pytest
import redis
from click.testing import CliRunner

from tests.conftest import (
    LANE,
    OPERATOR_TOKEN,
    PG_ADMIN,
    _swap_default,
    as_bytes,
    as_bytes_list,
    database_url,
    event,
)
from tests.web import InProcess
from webhooks.archive.store import Archive
from webhooks.cli import main
from webhooks.clock import now
from webhooks.errors import ArchiveUnavailable, DeliveryConflict, DeliveryNotFound
from webhooks.models import Attempt, AttemptError, Delivery, DeliveryStatus, Run
from webhooks.producer import Producer
from webhooks.settings import Settings
from webhooks.storage import deliveries
from webhooks.system import System
from webhooks.worker.archiver import Archiver

ARCHIVE_DB = "webhooks_archive" if LANE == "gw0" else f"webhooks_archive_{LANE}"
TIERED_URL = database_url(4)  # this module's Redis database; no worker uses it
RETENTION = 90 * 86400


def invoke(*args: str) -> Any:
    """A ``webhooks`` command in this process, on the default System."""
    result = CliRunner().invoke(main, list(args))
    return type(
        "Result",
        (),
        {"returncode": result.exit_code, "stdout": result.stdout, "stderr": result.stderr},
    )()


def archive_database(name: str = ARCHIVE_DB) -> str:
    """A database of the machine's PostgreSQL for the archive (created when missing)."""
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            admin.execute(f"CREATE DATABASE {name}")
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def empty_archive(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE webhooks_deliveries, webhooks_attempts, webhooks_archive_counts, "
            "webhooks_archive_erased"
        )


def archived_rows(dsn: str, table: str = "webhooks_deliveries") -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(scope="session")
def archive_dsn() -> str:
    dsn = archive_database()
    with Archive(dsn, RETENTION) as archive:
        archive.init()
    return dsn


@dataclass
class Tiers:
    """One Redis database seen by two Systems: ``plain`` without an archive, as every
    deployment was before, and ``tiered`` with one."""

    plain: System
    tiered: System
    client: redis.Redis
    dsn: str

    def archive_all(self) -> int:
        """Move every finished delivery, as the workers' archivers do."""
        archiver, moved = Archiver(self.tiered), 0
        while taken := archiver.run_once():
            moved += taken
        return moved


def tiered_settings(dsn: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": TIERED_URL,
        "archive_dsn": dsn,
        "archive_after_seconds": 0,
        "archive_lease_seconds": 1,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def tiers(archive_dsn: str) -> Iterator[Tiers]:
    client = redis.Redis.from_url(TIERED_URL)
    client.flushdb()
    empty_archive(archive_dsn)
    plain = System(Settings(redis_url=TIERED_URL))
    tiered = System(tiered_settings(archive_dsn))
    yield Tiers(plain, tiered, client, archive_dsn)
    plain.close()
    tiered.close()
    client.flushdb()
    client.close()


def attempt(number: int, ok: bool) -> Attempt:
    return Attempt(
        number=number,
        started_at=now(),
        duration_ms=12.5,
        status_code=200 if ok else 503,
        error=None if ok else AttemptError(kind="http_status", message="HTTP 503"),
        response_body="ok" if ok else "<b>busy</b>",
    )


def finish(system: System, delivery: Delivery, failures: int, ok: bool) -> None:
    """Record ``failures`` failed attempts, then a last one (``ok`` or exhausted)."""
    store = system.deliveries
    for n in range(failures):
        store.record_attempt(
            Run(delivery.id, 0, n),
            attempt(n + 1, ok=False),
            DeliveryStatus.RETRYING,
            now() + timedelta(seconds=60),
            tenant_id=delivery.tenant_id,
        )
    final = DeliveryStatus.DELIVERED if ok else DeliveryStatus.RETRIES_EXHAUSTED
    store.record_attempt(
        Run(delivery.id, 0, failures),
        attempt(failures + 1, ok=ok),
        final,
        tenant_id=delivery.tenant_id,
    )


@dataclass
class Dataset:
    tenants: list[str]
    endpoints: dict[str, list[str]]
    events: list[str]
    ids: list[str]
    unfinished: list[str]


def dataset(system: System) -> Dataset:
    """Two tenants with two endpoints each; 14 events published to each tenant: some
    delivered (after failures), some exhausted, some still on their way."""
    tenants = [f"acct_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    endpoints: dict[str, list[str]] = {}
    for tenant in tenants:
        system.tenants.add(tenant)
        endpoints[tenant] = [
            system.endpoints.add(f"http://127.0.0.1:9/{tenant}/{n}", tenant=tenant)[0].id
            for n in range(2)
        ]
    producer, events, ids, unfinished = Producer(system), [], [], []
    for n in range(14):
        raw = event()
        events.append(raw["id"])
        for tenant in tenants:
            created = producer.publish(raw, tenant=tenant)
            ids += created
            for k, delivery_id in enumerate(created):
                delivery = system.deliveries.get(delivery_id)
                if (n + k) % 5 == 4:
                    unfinished.append(delivery_id)  # pending: stays in Redis
                else:
                    finish(system, delivery, failures=n % 3, ok=(n + k) % 4 != 3)
        time.sleep(0.002)  # distinct creation times, and ties within each publish
    return Dataset(tenants, endpoints, events, ids, unfinished)


def pages(system: System, size: int, **query: Any) -> list[str]:
    store, found, after = system.deliveries, [], None
    while True:
        ids, after = store.page(limit=size, after=after, **query)
        found += ids
        if after is None:
            return found


def api_pages(client: InProcess, tenant: str, query: str) -> list[Any]:
    found: list[Any] = []
    cursor = ""
    while True:
        answer = client.call("GET", f"/api/v1/tenants/{tenant}/deliveries?limit=4{query}{cursor}")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        found += body["data"]
        if body["next_cursor"] is None:
            return found
        cursor = f"&cursor={body['next_cursor']}"


def views(system: System, data: Dataset) -> dict[str, Any]:
    """Everything the product shows of the dataset, as the CLI, the API and the
    Python API show it."""
    store = system.deliveries
    seen: dict[str, Any] = {}
    first, second = data.tenants
    endpoint = data.endpoints[first][0]
    for delivery_id in data.ids:
        seen[f"show {delivery_id}"] = store.get(delivery_id).model_dump(mode="json")
    filters: list[dict[str, Any]] = [
        {},
        {"tenant": first},
        {"tenant": second, "status": DeliveryStatus.DELIVERED},
        {"status": DeliveryStatus.RETRIES_EXHAUSTED},
        {"status": DeliveryStatus.PENDING},
        {"endpoint_id": endpoint},
        {"endpoint_id": endpoint, "status": DeliveryStatus.DELIVERED},
    ]
    for query in filters:
        for size in (1, 4, 50):
            seen[f"page {query} by {size}"] = pages(system, size, **query)
    seen["recent"] = [d.model_dump(mode="json") for d in store.recent(limit=30, tenant=first)]
    seen["stats"] = store.stats(overdue_after=120)
    seen["tenant stats"] = store.stats(overdue_after=120, tenant=first)
    for event_id in data.events[:3]:
        seen[f"event {event_id}"] = [
            (d.model_dump(mode="json"), n) for d, n in store.by_event(event_id)
        ]
        seen[f"event {event_id} of {second}"] = [d.id for d, _ in store.by_event(event_id, second)]
    seen["exhausted"] = sorted(
        store.exhausted(endpoint, now() - timedelta(hours=1), now() + timedelta(hours=1))
    )
    client = InProcess(system, OPERATOR_TOKEN)
    seen["api"] = api_pages(client, first, "")
    seen["api exhausted"] = api_pages(client, first, "&status=retries_exhausted")
    seen["api event"] = api_pages(client, second, f"&event_id={data.events[1]}")
    one = client.call("GET", f"/api/v1/tenants/{first}/deliveries/{data.ids[0]}")
    seen["api one"] = (one.status_code, one.json())
    seen["api stats"] = client.call("GET", f"/api/v1/tenants/{first}/stats").json()
    previous = _swap_default(system)
    try:
        listed = invoke("list", "--json", "--tenant", first, "--limit", "100")
        assert listed.returncode == 0, listed.stderr
        seen["cli list"] = json.loads(listed.stdout)
        shown = invoke("show", "--json", data.ids[1])
        seen["cli show"] = json.loads(shown.stdout)
        looked_up = invoke("list", "--json", "--event-id", data.events[2])
        seen["cli event"] = json.loads(looked_up.stdout)
    finally:
        _swap_default(previous)
    return seen


def test_every_view_is_the_same_whichever_tier_holds_a_delivery(tiers: Tiers) -> None:
    data = dataset(tiers.tiered)
    before = views(tiers.plain, data)  # no archive configured: Redis alone, as before
    finished = len(data.ids) - len(data.unfinished)
    assert tiers.tiered.deliveries.archive_backlog() == finished

    # Half way: some moved, some not.
    with closing(System(tiered_settings(tiers.dsn, archive_batch=17))) as halfway:
        Archiver(halfway).run_once()
    assert archived_rows(tiers.dsn) == 17
    assert views(tiers.tiered, data) == before

    assert tiers.archive_all() == finished - 17
    assert archived_rows(tiers.dsn) == finished
    assert tiers.tiered.deliveries.archive_backlog() == 0
    assert views(tiers.tiered, data) == before
    # The event lookup spans every tenant (the operator's view): one per endpoint.
    assert len(before[f"event {data.events[0]}"]) == 4


@pytest.mark.parametrize("by_tenant", [False, True])
def test_pages_neither_skip_nor_repeat_while_deliveries_move(
    tiers: Tiers, by_tenant: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deliveries, "ARCHIVE_SLICE", 4)  # each batch of 6 in two slices
    data = dataset(tiers.tiered)
    store = tiers.tiered.deliveries
    query: dict[str, Any] = {"tenant": data.tenants[0]} if by_tenant else {}
    expected = pages(tiers.plain, 50, **query)
    found, after = store.page(limit=5, **query)
    with closing(System(tiered_settings(tiers.dsn, archive_batch=6))) as moving:
        archiver = Archiver(moving)
        while after is not None:
            archiver.run_once()  # between two pages, some deliveries change tier
            ids, after = store.page(limit=5, after=after, **query)
            found += ids
    assert archived_rows(tiers.dsn) > 0
    assert found == expected


def hmget_calls(client: redis.Redis) -> int:
    """HMGET calls Redis has served: one per delivery a read asks Redis for (this
    lane's Redis serves this test alone)."""
    stats = cast(dict[str, dict[str, int]], client.info("commandstats"))
    return stats.get("cmdstat_hmget", {}).get("calls", 0)


def test_reads_ask_redis_only_for_the_deliveries_it_listed(tiers: Tiers) -> None:
    """A page, the newest deliveries and an event's deliveries ask Redis for the
    records of the ids Redis listed (the unfinished ones), not of the archive's."""
    system = tiers.tiered
    data = dataset(system)
    first, second = data.tenants
    expected = [
        d.model_dump(mode="json")
        for d, _ in tiers.plain.deliveries.listing(limit=50, tenant=first)[0]
    ]
    tiers.archive_all()
    store = system.deliveries
    reads: dict[str, Callable[[], list[Delivery]]] = {
        "page": lambda: [d for d, _ in store.listing(limit=50, tenant=first)[0]],
        "recent": lambda: store.recent(limit=30, tenant=second),
        "event": lambda: [d for d, _ in store.by_event(data.events[4])],
    }
    for name, read in reads.items():
        before = hmget_calls(tiers.client)
        shown = read()
        held = [d.id for d in shown if d.id in data.unfinished]
        assert hmget_calls(tiers.client) - before == len(held) > 0, name
        assert len(shown) > len(held), name
    assert [d.model_dump(mode="json") for d in reads["page"]()] == expected


def test_a_delivery_redelivered_between_a_pages_two_reads_is_still_shown(
    tiers: Tiers,
) -> None:
    """A page lists ids in the archive, then one of them is redelivered (written back
    to Redis, then its row deleted) before the page reads them: read from Redis."""
    system = tiers.tiered
    data = dataset(system)
    tiers.archive_all()
    store, tenant = system.deliveries, data.tenants[0]
    assert system.archive is not None
    listed = system.archive.entries(None, tenant, None, None, 50)
    ids = [delivery_id for delivery_id, _, _ in listed]
    created = {delivery_id: moment for delivery_id, _, moment in listed}
    moved = ids[3]
    Producer(system).redeliver(moved, tenant=tenant)
    assert system.archive.load(moved, tenant) is None

    shown = store.summaries(ids, created, archived_only=set(ids))
    assert [d.id for d, _ in shown] == ids
    assert next(d for d, _ in shown if d.id == moved).status is DeliveryStatus.PENDING
    full = store.full(ids, created, archived_only=set(ids))
    assert [d.id for d in full] == ids
    assert next(d for d in full if d.id == moved).status is DeliveryStatus.PENDING


def redis_holding(client: redis.Redis, delivery_id: str) -> list[str]:
    """Every key whose name or content holds the id (whatever its type)."""
    needle, holding = delivery_id.encode(), []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        content: list[bytes]
        if kind == b"string":
            content = [as_bytes(client.get(key) or b"")]
        elif kind == b"hash":
            content = as_bytes_list(b for pair in client.hgetall(key).items() for b in pair)
        elif kind == b"list":
            content = as_bytes_list(client.lrange(key, 0, -1))
        elif kind == b"set":
            content = as_bytes_list(client.smembers(key))
        elif kind == b"zset":
            content = as_bytes_list(client.zrange(key, 0, -1))
        else:
            content = []
        if needle in key or any(needle in value for value in content):
            holding.append(key.decode())
    return holding


def test_once_archived_only_the_idempotency_marker_holds_an_id(tiers: Tiers) -> None:
    data = dataset(tiers.tiered)
    tiers.archive_all()
    # The broker's queue, holding the first messages no worker consumed here.
    broker_lists = {tiers.tiered.app.conf.task_default_queue}
    for delivery_id in data.ids:
        holding = [
            key for key in redis_holding(tiers.client, delivery_id) if key not in broker_lists
        ]
        if delivery_id in data.unfinished:
            assert any(key.endswith(f"delivery:{delivery_id}") for key in holding)
        else:
            assert len(holding) == 1 and "idempotency" in holding[0], holding


def test_publishing_again_after_archiving_creates_nothing(tiers: Tiers) -> None:
    system = tiers.tiered
    data = dataset(system)
    tenant = data.tenants[0]
    raw = event()
    ids = Producer(system).publish(raw, tenant=tenant)
    for delivery_id in ids:
        finish(system, system.deliveries.get(delivery_id), failures=0, ok=True)
    tiers.archive_all()
    rows, keys = archived_rows(tiers.dsn), tiers.client.dbsize()
    queued = tiers.client.llen("celery")

    assert Producer(system).publish(raw, tenant=tenant) == ids
    assert (archived_rows(tiers.dsn), tiers.client.dbsize()) == (rows, keys)
    assert tiers.client.llen("celery") == queued  # no message either
    assert all(system.deliveries.get(i).status is DeliveryStatus.DELIVERED for i in ids)
    with pytest.raises(DeliveryConflict):  # the same id for another event
        Producer(system).publish({**raw, "created_at": "2026-11-27T10:00:00Z"}, tenant=tenant)
    assert tiers.client.dbsize() == keys


def test_after_the_idempotency_window_the_same_event_is_a_new_delivery(tiers: Tiers) -> None:
    system = System(tiered_settings(tiers.dsn, idempotency_hours=1.5 / 3600))  # 1.5 s
    try:
        url = "http://127.0.0.1:9/window"
        raw = event()
        (first,) = Producer(system).deliver_many([(url, raw)])
        finish(system, system.deliveries.get(first), failures=0, ok=True)
        Archiver(system).run_once()
        assert Producer(system).deliver_many([(url, raw)]) == [first]
        assert not tiers.client.exists(system.keys.delivery(first))
        time.sleep(1.6)
        assert Producer(system).deliver_many([(url, raw)]) == [first]  # the same id, new
        fresh = system.deliveries.get(first)  # Redis's, pending, is the one shown
        assert (fresh.status, fresh.attempts) == (DeliveryStatus.PENDING, [])
    finally:
        system.close()


def test_redeliver_brings_an_archived_delivery_back_whole(tiers: Tiers) -> None:
    system = tiers.tiered
    data = dataset(system)
    exhausted = next(
        i
        for i in data.ids
        if i not in data.unfinished
        and system.deliveries.get(i).status is DeliveryStatus.RETRIES_EXHAUSTED
    )
    before = system.deliveries.load(exhausted)
    tiers.archive_all()
    total = system.deliveries.stats(overdue_after=120)

    Producer(system).redeliver(exhausted, tenant=before[0].tenant_id)
    back, body = system.deliveries.load(exhausted)
    assert tiers.client.exists(system.keys.delivery(exhausted))
    assert body == before[1] and back.attempts == before[0].attempts
    assert back.status is DeliveryStatus.PENDING and back.created_at == before[0].created_at
    assert pages(system, 7).count(exhausted) == 1  # listed once, now from Redis
    counted = system.deliveries.stats(overdue_after=120)
    assert counted["pending"] == total["pending"] + 1
    assert counted["retries_exhausted"] == total["retries_exhausted"] - 1

    attempts = len(before[0].attempts)
    system.deliveries.record_attempt(
        Run(exhausted, 1, 0),
        attempt(attempts + 1, ok=True),
        DeliveryStatus.DELIVERED,
        tenant_id=back.tenant_id,
    )
    tiers.archive_all()
    again = system.deliveries.get(exhausted)
    assert not tiers.client.exists(system.keys.delivery(exhausted))
    assert [a.number for a in again.attempts] == list(range(1, attempts + 2))
    assert again.status is DeliveryStatus.DELIVERED
    assert pages(system, 7).count(exhausted) == 1
    assert archived_rows(tiers.dsn) == len(data.ids) - len(data.unfinished)


def test_recover_finds_archived_deliveries(tiers: Tiers) -> None:
    system = tiers.tiered
    data = dataset(system)
    tenant = data.tenants[0]
    endpoint = data.endpoints[tenant][0]
    exhausted = sorted(
        i
        for i in data.ids
        if i not in data.unfinished
        and (d := system.deliveries.get(i)).endpoint_id == endpoint
        and d.status is DeliveryStatus.RETRIES_EXHAUSTED
    )
    assert exhausted
    tiers.archive_all()
    recovered = Producer(system).recover(endpoint, now() - timedelta(hours=1), tenant=tenant)
    assert sorted(recovered) == exhausted
    for delivery_id in exhausted:
        assert system.deliveries.get(delivery_id).status is DeliveryStatus.PENDING
    assert Producer(system).recover(endpoint, now() - timedelta(hours=1), tenant=tenant) == []


def test_deleting_a_tenant_erases_its_archive(tiers: Tiers) -> None:
    system = tiers.tiered
    data = dataset(system)
    gone, kept = data.tenants
    tiers.archive_all()
    # More of the tenant's deliveries on their way to the archive: one waiting, and
    # a batch an archiver took but had not written when the tenant went.
    waiting = Producer(system).publish(event(), tenant=gone)
    taken = Producer(system).publish(event(), tenant=gone)
    for delivery_id in waiting + taken:
        finish(system, system.deliveries.get(delivery_id), failures=0, ok=True)
    tiers.client.zadd(system.keys.archivable(), {i: time.time() + 3600 for i in waiting})
    batch = system.deliveries.take_archivable(10, 0, 60)
    assert sorted(item.id for item in batch) == sorted(taken)

    owned = [i for i in data.ids if system.deliveries.get(i).tenant_id == gone]
    system.tenants.delete(gone)
    assert system.archive is not None
    system.archive.write(batch)  # the archiver's late commit writes nothing of it
    system.deliveries.forget_archived(batch)
    tiers.archive_all()
    with psycopg.connect(tiers.dsn) as conn:
        tenants = {t for (t,) in conn.execute("SELECT tenant_id FROM webhooks_deliveries")}
        counted = {t for (t,) in conn.execute("SELECT tenant_id FROM webhooks_archive_counts")}
    assert tenants == counted == {kept}
    for delivery_id in owned + waiting + taken:
        with pytest.raises(DeliveryNotFound):
            system.deliveries.get(delivery_id)
    for delivery_id in set(data.ids) - set(owned):
        assert system.deliveries.get(delivery_id).tenant_id == kept
    assert system.deliveries.stats(overdue_after=120, tenant=gone) == {
        "pending": 0,
        "retrying": 0,
        "delivered": 0,
        "retries_exhausted": 0,
        "overdue": 0,
    }
    # The same tenant id registered again starts afresh, and is archived.
    system.tenants.add(gone)
    system.endpoints.add("http://127.0.0.1:9/again", tenant=gone)
    (fresh,) = Producer(system).publish(event(), tenant=gone)
    finish(system, system.deliveries.get(fresh), failures=0, ok=True)
    tiers.archive_all()
    assert system.deliveries.get(fresh, gone).status is DeliveryStatus.DELIVERED
    assert not tiers.client.exists(system.keys.delivery(fresh))


def test_event_lookup_by_cli_in_both_modes(tiers: Tiers) -> None:
    data = dataset(tiers.tiered)
    tiers.archive_all()
    for system in (tiers.plain, tiers.tiered):
        previous = _swap_default(system)
        try:
            unknown = invoke("list", "--event-id", "evt_never_published", "--json")
            assert (unknown.returncode, json.loads(unknown.stdout)) == (0, [])
            scoped = invoke("list", "--event-id", data.events[5], "--tenant", data.tenants[1])
            assert scoped.returncode == 0
        finally:
            _swap_default(previous)
    listed = json.loads(
        invoke_with(tiers.tiered, "list", "--event-id", data.events[5], "--json").stdout
    )
    assert {d["tenant_id"] for d in listed} == set(data.tenants) and len(listed) == 4
    assert {d["event_id"] for d in listed} == {data.events[5]}


def invoke_with(system: System, *args: str) -> Any:
    previous = _swap_default(system)
    try:
        return invoke(*args)
    finally:
        _swap_default(previous)


def test_a_read_that_needs_an_unreachable_archive_fails_whole(tiers: Tiers) -> None:
    data = dataset(tiers.tiered)
    tiers.archive_all()
    away = System(tiered_settings("postgresql://postgres@127.0.0.1:9/none"))
    try:
        redis_only = data.unfinished[0]
        assert away.deliveries.get(redis_only).id == redis_only  # Redis alone answers
        with pytest.raises(ArchiveUnavailable, match=r"127\.0\.0\.1:9"):
            away.deliveries.get(data.ids[0] if data.ids[0] != redis_only else data.ids[1])
        with pytest.raises(ArchiveUnavailable):
            away.deliveries.page(limit=10)
        listed = invoke_with(away, "list")
        assert listed.returncode == 1 and listed.stdout == ""
        assert len(listed.stderr.strip().splitlines()) == 1
        assert "archive" in listed.stderr and "Traceback" not in listed.stderr
        client = InProcess(away, OPERATOR_TOKEN)
        answer = client.call("GET", f"/api/v1/tenants/{data.tenants[0]}/deliveries")
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "unavailable"
    finally:
        away.close()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--dsn", "mysql://root@127.0.0.1/x"], "WEBHOOKS_ARCHIVE_DSN"),
        (["--dsn", "postgresql://postgres@127.0.0.1:9/x"], "WEBHOOKS_ARCHIVE_DSN"),
        ([], "WEBHOOKS_ARCHIVE_DSN"),
    ],
)
def test_archive_init_refuses_a_bad_dsn_in_one_line(args: list[str], fragment: str) -> None:
    result = invoke("archive", "init", *args)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr


def test_archive_init_creates_the_tables_and_can_run_again() -> None:
    dsn = archive_database(f"{ARCHIVE_DB}_init")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS webhooks_deliveries, webhooks_attempts CASCADE")
    for _ in range(2):
        result = invoke("archive", "init", "--dsn", dsn)
        assert result.returncode == 0, result.stderr
    with psycopg.connect(dsn) as conn:
        partitions = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'webhooks_deliveries'::regclass"
        ).fetchone()
        indexes = conn.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'webhooks_deliveries'"
        ).fetchone()
    assert partitions is not None and partitions[0] >= 3
    assert indexes is not None and indexes[0] == 8  # the key, and one per listing


def test_prune_drops_whole_days_past_retention(archive_dsn: str) -> None:
    archive = Archive(archive_dsn, 2 * 86400)
    try:
        today = now().date()
        archive._ensure_days({today - timedelta(days=n) for n in range(6)})
        dropped = archive.prune()
        assert today - timedelta(days=3) in dropped and today - timedelta(days=2) not in dropped
        with psycopg.connect(archive_dsn) as conn:
            names = {
                name
                for (name,) in conn.execute(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                )
            }
        for n in range(6):
            day = today - timedelta(days=n)
            for table in ("webhooks_deliveries", "webhooks_attempts"):
                assert (f"{table}_p{day:%Y%m%d}" in names) == (n < 3), (table, n)
    finally:
        archive.close()
        with Archive(archive_dsn, RETENTION) as again:
            again.init()


def test_a_test_delivery_stays_a_test_in_the_archive_and_back(tiers: Tiers) -> None:
    """A test event's delivery is marked ``test`` in the archive's listings and record,
    and still when redeliver brings it back to Redis (its attempts say so in a header)."""
    system = tiers.tiered
    tenant = f"acct_{uuid.uuid4().hex[:8]}"
    system.tenants.add(tenant)
    endpoint, _ = system.endpoints.add(f"http://127.0.0.1:9/{tenant}/test", tenant=tenant)
    producer = Producer(system)
    tested = producer.send_test(endpoint.id, tenant=tenant)
    (plain,) = producer.publish(event(), tenant=tenant)
    for delivery_id in (tested, plain):
        finish(system, system.deliveries.get(delivery_id), failures=0, ok=True)
    tiers.archive_all()
    assert not tiers.client.exists(system.keys.delivery(tested))
    assert system.deliveries.get(tested).test and not system.deliveries.get(plain).test
    listed = {d.id: d.test for d, _ in system.deliveries.listing(tenant=tenant)[0]}
    assert listed == {tested: True, plain: False}

    producer.redeliver(tested, tenant=tenant)
    assert tiers.client.exists(system.keys.delivery(tested))
    assert system.deliveries.get(tested).test
    assert system.deliveries.claim_attempt(Run(tested, 1, 0), 30).test


def test_an_ordered_delivery_keeps_its_key_in_the_archive_and_waiting_ones_stay(
    tiers: Tiers,
) -> None:
    """Only finished deliveries leave Redis: the one waiting behind stays, and the
    archived one still shows its key; redelivered, it takes no place in the order."""
    system = tiers.tiered
    tenant = f"acct_{uuid.uuid4().hex[:8]}"
    system.tenants.add(tenant)
    system.endpoints.add(f"http://127.0.0.1:9/{tenant}/ordered", tenant=tenant)
    producer = Producer(system)
    first, second, third = (
        producer.publish(event(), tenant=tenant, ordering_key="set_1")[0] for _ in range(3)
    )
    finish(system, system.deliveries.get(first), failures=0, ok=True)
    assert tiers.archive_all() == 1
    assert not tiers.client.exists(system.keys.delivery(first))
    assert system.deliveries.get(first).ordering_key == "set_1"
    assert tiers.client.exists(system.keys.delivery(second))
    assert system.deliveries.get(third).waiting_behind == second
    producer.redeliver(first, tenant=tenant)
    back = system.deliveries.get(first)
    assert back.ordering_key == "set_1" and back.waiting_behind is None
    assert system.deliveries.get(third).waiting_behind == second
