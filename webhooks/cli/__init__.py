"""The ``webhooks`` command: every refusal is one line on stderr and a non-zero exit."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
from pydantic import ValidationError

from .. import extras
from .._version import __version__
from ..broker.app import broker_failure
from ..errors import MissingExtra, WebhooksError
from ..settings import bad_setting, shown_url
from ..storage.connection import failure as redis_failure
from ..system import get_default
from . import deliveries
from .demo import demo
from .endpoints import endpoints
from .metrics import metrics_server
from .secrets import secrets
from .sessions import sessions
from .tenants import tenants


def _needs(extra: str, name: str, summary: str) -> click.Command:
    """The command ``name``, which needs ``extra``: without it, one line saying so."""

    def refuse() -> None:
        raise MissingExtra(extra, f"webhooks {name}")

    return click.Command(
        name,
        callback=refuse,
        short_help=f"{summary} (needs the {extra!r} extra)",
        help=f"{summary} (needs the {extra!r} extra: pip install 'celery-webhooks[{extra}]')",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


# The commands whose modules import an extra's packages load only with it installed.
serve: click.Command
portal_link: click.Command
outbox: click.Command
archive: click.Command
if extras.installed("server"):
    from . import web

    serve, portal_link = web.serve, web.portal_link
else:
    serve = _needs("server", "serve", "Run the HTTP API, the console and the portal.")
    portal_link = _needs("server", "portal-link", "Print a link that opens a tenant's portal.")
if extras.installed("outbox"):
    from . import outbox as outbox_commands

    outbox = outbox_commands.outbox
else:
    outbox = _needs("outbox", "outbox", "The transactional outbox in PostgreSQL.")
if extras.installed("archive"):
    from . import archive as archive_commands

    archive = archive_commands.archive
else:
    archive = _needs("archive", "archive", "The delivery log's archive in PostgreSQL.")


__all__ = ["main"]

_NoArgsIsHelp: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _OneLineErrors(click.Group):
    """Every refusal ends as one line on stderr and exit code 1 or 2, never a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except _NoArgsIsHelp as exc:
            click.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:  # usage errors included: no usage banner
            click.echo(f"Error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted.", err=True)
            sys.exit(1)
        except WebhooksError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except ValidationError as exc:
            click.echo(f"Error: {bad_setting(exc)}", err=True)
            sys.exit(1)
        except Exception as exc:
            if (reason := redis_failure(exc)) is not None:
                where = shown_url(get_default().settings.redis_url)
                click.echo(
                    f"Error: Redis at {where} failed: {reason}; retrying the same command is safe",
                    err=True,
                )
            elif (reason := broker_failure(exc)) is not None:
                click.echo(
                    f"Error: the broker failed: {reason}; retrying the same command is safe",
                    err=True,
                )
            else:
                raise
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_OneLineErrors)
@click.version_option(__version__, prog_name="webhooks")
def main() -> None:
    """Webhook delivery on Celery and Redis."""


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option(
    "--no-auth",
    is_flag=True,
    help="Start Flower without authentication (only behind your own auth proxy).",
)
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower(no_auth: bool, flower_args: tuple[str, ...]) -> None:
    """Start Flower (`celery -A webhooks flower`), refusing to do so without basic auth.

    Flower shows every task and can revoke work, so it needs credentials:
    FLOWER_BASIC_AUTH=user:password (comma-separate several pairs). Flower
    listens on 127.0.0.1 unless given --address. Other arguments go to Flower
    (e.g. --port=5555).
    """
    credentials = os.environ.get("FLOWER_BASIC_AUTH", "")
    pairs = [pair.partition(":") for pair in credentials.split(",") if pair]
    if not no_auth:
        if not pairs:
            raise click.UsageError(
                "FLOWER_BASIC_AUTH is not set; Flower would be open to "
                "anyone. Set it to user:password, or pass --no-auth."
            )
        if any(not user or not sep or len(password) < 8 for user, sep, password in pairs):
            raise click.UsageError(
                "FLOWER_BASIC_AUTH must be user:password pairs, each password at least 8 characters"
            )
    else:
        click.echo("warning: Flower starts without authentication (--no-auth)", err=True)
    if not any(arg.startswith("--address") for arg in flower_args):
        flower_args = ("--address=127.0.0.1", *flower_args)  # Flower's own default is every one
    command = [sys.executable, "-m", "celery", "-A", "webhooks", "flower", *flower_args]
    os.execv(sys.executable, command)


for command in (
    deliveries.send,
    deliveries.show,
    deliveries.list_,
    deliveries.publish,
    deliveries.redeliver,
    deliveries.skip,
    deliveries.recover,
    deliveries.stats,
    deliveries.schema,
    deliveries.event_types,
    demo,
    endpoints,
    secrets,
    tenants,
    sessions,
    serve,
    portal_link,
    metrics_server,
    outbox,
    archive,
):
    main.add_command(command)
