"""The transactional outbox: events written in the producer's own PostgreSQL
transaction, turned into deliveries only once that transaction commits.

    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute("UPDATE screenshot_sets SET approved = true WHERE id = %s", [set_id])
        webhooks.outbox.add(conn, event, tenant="acct_42")

- :func:`add` validates the event where it is written and inserts it into
  ``webhooks_outbox`` through the caller's connection: a rollback takes it away,
  a commit keeps it, and nothing of it reaches Redis before.
- The relay (:mod:`.relay`; ``webhooks outbox relay``, or any worker when
  ``WEBHOOKS_OUTBOX_DSN`` is set) moves committed rows into deliveries, woken by
  the commit's NOTIFY, several at once with ``FOR UPDATE SKIP LOCKED``. A row
  becomes its deliveries once: a relay killed after publishing and before
  deleting the row leaves it to the next one, whose publish of the same event
  creates nothing new (delivery ids follow from the event id and the endpoint).
- A row whose event no longer validates, whose tenant is gone, or whose event
  id was used for another event is kept, marked with why (``webhooks outbox
  list --failed``), and never retried by itself.
"""

from __future__ import annotations

from typing import Any

from ..models import check_ordering_key
from ..producer import check_event
from .connections import execute
from .table import DDL, INSERT

__all__ = ["DDL", "add"]


def add(conn: Any, event: Any, *, tenant: str, ordering_key: str | None = None) -> int:
    """Write ``event`` for ``tenant`` into the outbox in the caller's transaction; returns
    the row's id. ``conn``: a psycopg 3 connection, a SQLAlchemy ``Connection`` or
    ``Session``, or a Django connection alias (``"default"``).

    The event is checked here, as :func:`webhooks.publish` checks it, and a bad one
    raises :class:`~webhooks.InvalidInput` naming the field, writing nothing. Whether
    the tenant exists is the relay's to find out: this call never touches Redis.
    ``ordering_key``: as :func:`webhooks.publish` takes it, checked here too.
    """
    _, body, tenant_id = check_event(event, tenant)
    key = check_ordering_key(ordering_key)
    return int(
        execute(conn, INSERT, {"tenant": tenant_id, "event": body.decode(), "ordering_key": key})
    )
