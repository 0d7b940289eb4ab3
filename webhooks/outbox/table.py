"""The ``webhooks_outbox`` table and every statement run on it (pyformat parameters,
as psycopg, SQLAlchemy's PostgreSQL drivers and Django all take them)."""

from __future__ import annotations

__all__ = ["CHANNEL", "DDL", "DELETE", "FAIL", "INSERT", "LIST", "RETRY", "TAKE"]

#: The NOTIFY channel a commit wakes the relays on.
CHANNEL = "webhooks_outbox"

#: Creates the table, idempotently: `webhooks outbox init` runs it; a Django
#: migration (RunSQL) or an Alembic revision (op.execute) can run it as it is.
DDL = """
CREATE TABLE IF NOT EXISTS webhooks_outbox (
    id         bigserial PRIMARY KEY,
    tenant     text NOT NULL,
    event      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    failed_at  timestamptz,
    failure    text
);
-- Added with ordered delivery; a table made before gains it here.
ALTER TABLE webhooks_outbox ADD COLUMN IF NOT EXISTS ordering_key text;
CREATE INDEX IF NOT EXISTS webhooks_outbox_waiting ON webhooks_outbox (id)
    WHERE failed_at IS NULL;
"""

# The NOTIFY is part of the caller's transaction: PostgreSQL sends it at commit, and
# never for a rollback.
INSERT = f"""
WITH added AS (
    INSERT INTO webhooks_outbox (tenant, event, ordering_key)
    VALUES (%(tenant)s, %(event)s, %(ordering_key)s) RETURNING id
)
SELECT id, pg_notify('{CHANNEL}', '') FROM added
"""

TAKE = """
SELECT id, tenant, event, ordering_key FROM webhooks_outbox WHERE failed_at IS NULL
ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
"""

DELETE = "DELETE FROM webhooks_outbox WHERE id = ANY(%(ids)s)"

FAIL = "UPDATE webhooks_outbox SET failed_at = now(), failure = %(failure)s WHERE id = %(id)s"

LIST = """
SELECT id, tenant, event, created_at, failed_at, failure FROM webhooks_outbox
WHERE (failed_at IS NOT NULL) = %(failed)s ORDER BY id LIMIT %(limit)s
"""

RETRY = """
UPDATE webhooks_outbox SET failed_at = NULL, failure = NULL
WHERE id = ANY(%(ids)s) AND failed_at IS NOT NULL RETURNING id
"""
