"""``webhooks archive init|run|prune``: the delivery log's archive in PostgreSQL."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from ..archive.store import Archive
from ..errors import ArchiveUnavailable, InvalidInput
from ..settings import check_archive_dsn
from ..system import get_default
from ..worker.archiver import Archiver

__all__ = ["archive"]


def _archive(dsn: str | None) -> Archive:
    """The archive ``--dsn`` names, or else WEBHOOKS_ARCHIVE_DSN's."""
    if dsn is None:
        settings = get_default().settings
        if settings.archive_dsn is None:
            raise InvalidInput(
                "WEBHOOKS_ARCHIVE_DSN", "is not set; set it, or pass --dsn postgresql://..."
            )
        return Archive(settings.archive_dsn.get_secret_value(), settings.retention_seconds)
    try:
        check_archive_dsn(dsn)
    except ValueError as error:
        raise InvalidInput("WEBHOOKS_ARCHIVE_DSN (--dsn)", str(error)) from None
    return Archive(dsn, get_default().settings.retention_seconds)


dsn_option = click.option(
    "--dsn",
    default=None,
    metavar="URL",
    help="The archive's postgresql:// URL (default: WEBHOOKS_ARCHIVE_DSN).",
)


@click.group()
def archive() -> None:
    """The delivery log's archive in PostgreSQL (WEBHOOKS_ARCHIVE_DSN)."""


@archive.command()
@dsn_option
def init(dsn: str | None) -> None:
    """Create the archive's tables and partitions (safe to run again)."""
    store = _archive(dsn)
    try:
        store.init()
    except ArchiveUnavailable as error:
        raise ArchiveUnavailable(f"WEBHOOKS_ARCHIVE_DSN: {error}; nothing was written") from None
    finally:
        store.close()
    click.echo(f"archive ready at {store.where}")


@archive.command()
@dsn_option
def prune(dsn: str | None) -> None:
    """Drop the days of the archive wholly past WEBHOOKS_RETENTION_DAYS."""
    store = _archive(dsn)
    try:
        days = store.prune()
    finally:
        store.close()
    click.echo(f"dropped {len(days)} days" + "".join(f"\n{day.isoformat()}" for day in days))


@archive.command()
def run() -> None:
    """Move finished deliveries from Redis to the archive until stopped (SIGTERM or
    Ctrl-C): what every worker does unless WEBHOOKS_ARCHIVE_IN_WORKERS=false."""
    system = get_default()
    if system.archive is None:
        raise InvalidInput("WEBHOOKS_ARCHIVE_DSN", "is not set; there is no archive to move to")
    stop = threading.Event()

    def finish(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    archiver = Archiver(system)
    click.echo(f"archiving to {system.archive.where}", err=True)
    archiver.run_forever(stop)
    click.echo(f"moved {archiver.moved} deliveries", err=True)
