"""``webhooks outbox``: create the table, run a relay, see and retry failed rows."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Iterator
from typing import Any

import click
import psycopg
from rich.markup import escape
from rich.table import Table

from ..outbox.relay import Relay, first_line
from ..outbox.table import DDL, LIST, RETRY
from ..settings import get_settings
from .options import console

__all__ = ["outbox"]


def _dsn(given: str | None) -> str:
    if given:
        return given
    configured = get_settings().outbox_dsn
    if configured is None:
        raise click.UsageError("no database: pass --dsn, or set WEBHOOKS_OUTBOX_DSN")
    return configured.get_secret_value()


@contextlib.contextmanager
def _connect(dsn: str) -> Iterator[psycopg.Connection]:
    """A connection, and every database error while it is used as one line."""
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
    except psycopg.Error as error:
        raise click.ClickException(
            f"could not connect to PostgreSQL: {first_line(error)}"
        ) from None
    try:
        with conn:
            yield conn
    except psycopg.errors.UndefinedTable:
        raise click.ClickException(
            "there is no webhooks_outbox table in this database; "
            "create it with: webhooks outbox init"
        ) from None
    except psycopg.Error as error:
        raise click.ClickException(f"PostgreSQL refused: {first_line(error)}") from None


_DSN = click.option(
    "--dsn", metavar="DSN", help="PostgreSQL connection string [default: WEBHOOKS_OUTBOX_DSN]."
)


@click.group()
def outbox() -> None:
    """The transactional outbox in your PostgreSQL database."""


@outbox.command()
@_DSN
def init(dsn: str | None) -> None:
    """Create the webhooks_outbox table and its index (safe to run again)."""
    with _connect(_dsn(dsn)) as conn:
        conn.execute(DDL)
    click.echo("webhooks_outbox is ready")


@outbox.command()
@_DSN
@click.option(
    "--batch",
    type=click.IntRange(1, 10_000),
    default=None,
    help="Rows per transaction [default: WEBHOOKS_OUTBOX_BATCH, 100].",
)
@click.option(
    "--poll",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Seconds between looks when no NOTIFY comes [default: WEBHOOKS_OUTBOX_POLL_SECONDS, 1].",
)
def relay(dsn: str | None, batch: int | None, poll: float | None) -> None:
    """Move committed rows into deliveries until stopped (SIGTERM or Ctrl-C).

    Run as many as you like: each takes rows the others have not locked.
    """
    settings = get_settings()
    with _connect(_dsn(dsn)) as conn:  # a wrong DSN or a missing table fails here, in one line
        conn.execute("SELECT 1 FROM webhooks_outbox LIMIT 1")
    worker = Relay(_dsn(dsn), batch or settings.outbox_batch, poll or settings.outbox_poll_seconds)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    click.echo("relaying outbox rows; Ctrl-C to stop", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        worker.run_forever(stop)
    click.echo(f"relayed {worker.relayed} rows, {worker.failed} failed", err=True)


@outbox.command("list")
@_DSN
@click.option("--failed", is_flag=True, help="The rows the relay gave up on, and why.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
def list_(dsn: str | None, failed: bool, limit: int, as_json: bool) -> None:
    """Rows waiting for the relay, or with --failed those it gave up on."""
    with _connect(_dsn(dsn)) as conn:
        rows = [
            _row(*row) for row in conn.execute(LIST, {"failed": failed, "limit": limit}).fetchall()
        ]
    if as_json:
        for shown in rows:
            click.echo(json.dumps(shown))
        return
    if not rows:
        click.echo("no failed rows" if failed else "no rows waiting", err=True)
        return
    table = Table(
        title="failed outbox rows" if failed else "outbox rows waiting", title_justify="left"
    )
    for column in ("id", "tenant", "event id", "created at", *(("failure",) if failed else ())):
        table.add_column(column)
    for shown in rows:
        # What a producer wrote: shown, never read as markup.
        cells = [
            str(shown["id"]),
            escape(shown["tenant"]),
            escape(shown["event_id"]),
            shown["created_at"],
            *((escape(shown["failure"] or ""),) if failed else ()),
        ]
        table.add_row(*cells)
    console.print(table)


@outbox.command()
@_DSN
@click.argument("row_ids", metavar="ID...", nargs=-1, required=True, type=int)
def retry(dsn: str | None, row_ids: tuple[int, ...]) -> None:
    """Give failed rows back to the relay (after fixing what failed them)."""
    with _connect(_dsn(dsn)) as conn:
        found = {row[0] for row in conn.execute(RETRY, {"ids": list(row_ids)}).fetchall()}
    missing = [row_id for row_id in row_ids if row_id not in found]
    if missing:
        raise click.ClickException(f"not failed rows: {', '.join(map(str, missing[:20]))}")
    click.echo(f"{len(found)} rows given back to the relay")


def _row(
    row_id: int, tenant: str, text: str, created_at: Any, failed_at: Any, failure: str | None
) -> dict[str, Any]:
    try:
        event = json.loads(text)
        event_id = str(event.get("id")) if isinstance(event, dict) else "?"
    except ValueError:
        event_id = "?"
    return {
        "id": row_id,
        "tenant": tenant,
        "event_id": event_id[:100],
        "created_at": created_at.isoformat(),
        "failed_at": failed_at.isoformat() if failed_at else None,
        "failure": failure,
    }
