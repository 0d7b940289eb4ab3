"""SQLAlchemy, against the real PostgreSQL: publish_on_commit on a Session and the
outbox through a Session or a Connection, on commit and on rollback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import event, import_or_missing, tenant_deliveries
from webhooks import outbox
from webhooks.errors import InvalidInput
from webhooks.outbox.relay import drain
from webhooks.system import get_default

sqlalchemy = import_or_missing("sqlalchemy")
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402


@pytest.fixture(scope="module")
def engine(pg_dsn: str) -> Iterator[Engine]:
    engine = sqlalchemy.create_engine(pg_dsn.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS approvals (id serial PRIMARY KEY, "
                "screenshot_set text NOT NULL)"
            )
        )
    yield engine
    engine.dispose()


def test_published_after_the_commit_only(
    engine: Engine, two_endpoints: tuple[str, list[str]]
) -> None:
    from webhooks.contrib.sqlalchemy import publish_on_commit

    tenant, endpoints = two_endpoints
    sent = event()
    with Session(engine) as session:
        with session.begin():
            session.execute(text("INSERT INTO approvals (screenshot_set) VALUES ('set_1')"))
            publish_on_commit(session, sent, tenant=tenant)
            assert tenant_deliveries(tenant) == []
        assert sorted(tenant_deliveries(tenant)) == sorted((sent["id"], e) for e in endpoints)
        # The next transaction of the same session starts with nothing pending.
        with session.begin():
            pass
    assert len(tenant_deliveries(tenant)) == len(endpoints)


def test_a_rollback_publishes_nothing_then_or_later(
    engine: Engine, two_endpoints: tuple[str, list[str]]
) -> None:
    from webhooks.contrib.sqlalchemy import publish_on_commit

    tenant, endpoints = two_endpoints
    with Session(engine) as session:
        with pytest.raises(ZeroDivisionError), session.begin():
            publish_on_commit(session, event(), tenant=tenant)
            1 / 0  # noqa: B018
        assert tenant_deliveries(tenant) == []
        later = event()
        with session.begin():  # what the rolled-back transaction held is not sent now
            publish_on_commit(session, later, tenant=tenant)
    assert sorted(tenant_deliveries(tenant)) == sorted((later["id"], e) for e in endpoints)


def test_a_rolled_back_savepoint_drops_what_it_added(
    engine: Engine, two_endpoints: tuple[str, list[str]]
) -> None:
    from webhooks.contrib.sqlalchemy import publish_on_commit

    tenant, endpoints = two_endpoints
    kept, inner = event(), event()
    with Session(engine) as session, session.begin():
        publish_on_commit(session, kept, tenant=tenant)
        with pytest.raises(ZeroDivisionError), session.begin_nested():
            publish_on_commit(session, inner, tenant=tenant)
            1 / 0  # noqa: B018
        with session.begin_nested():  # a savepoint released: its event stays
            publish_on_commit(session, later := event(), tenant=tenant)
    assert sorted(tenant_deliveries(tenant)) == sorted(
        (sent["id"], e) for sent in (kept, later) for e in endpoints
    )


def test_a_bad_event_fails_at_the_call(engine: Engine, tenant: str) -> None:
    from webhooks.contrib.sqlalchemy import publish_on_commit

    with Session(engine) as session, session.begin():
        with pytest.raises(InvalidInput) as refused:
            publish_on_commit(session, {**event(), "type": 7}, tenant=tenant)
        assert refused.value.field == "type"
    assert tenant_deliveries(tenant) == []


@pytest.mark.parametrize("through", ["session", "connection"])
def test_the_outbox_through_a_session_or_a_connection(
    engine: Engine, outbox_dsn: str, two_endpoints: tuple[str, list[str]], through: str
) -> None:
    tenant, endpoints = two_endpoints

    def add(sent: dict[str, object], fail: bool) -> None:
        if through == "session":
            with Session(engine) as session, session.begin():
                outbox.add(session, sent, tenant=tenant)
                if fail:
                    raise ZeroDivisionError
        else:
            with engine.begin() as conn:
                outbox.add(conn, sent, tenant=tenant)
                if fail:
                    raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        add(event(), fail=True)
    assert drain(get_default(), outbox_dsn) == 0
    sent = event()
    add(sent, fail=False)
    assert drain(get_default(), outbox_dsn) == 1
    assert sorted(tenant_deliveries(tenant)) == sorted((sent["id"], e) for e in endpoints)
