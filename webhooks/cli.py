"""The ``webhooks`` command."""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import IO, Any, ClassVar

import click
import redis
from rich.console import Console
from rich.table import Table

from .cli_endpoints import endpoints
from .clock import now
from .errors import WebhooksError
from .events import event_schema
from .models import DeliveryStatus
from .render import attempts_table, deliveries_table
from .settings import get_settings
from .store import get_store

console = Console()


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
        except redis.RedisError as exc:
            click.echo(f"Error: Redis at {get_settings().redis_url} failed: {exc}", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


class Moment(click.ParamType[datetime]):
    """A point in time: ISO-8601, or a span before now such as 90s, 30m, 6h, 2d."""

    name = "time"
    _units: ClassVar[dict[str, str]] = {"s": "seconds", "m": "minutes", "h": "hours",
                                        "d": "days"}

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text)
        if match:
            return now() - timedelta(**{self._units[match[2]]: float(match[1])})
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{text!r} is neither ISO-8601 nor a span like 6h or 2d", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _read_event(event_file: IO[str]) -> Any:
    text = event_file.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(
            f"{event_file.name}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


@click.group(cls=_OneLineErrors)
@click.version_option(package_name="webhooks")
def main() -> None:
    """Webhook delivery on Celery and Redis."""


@main.command()
@click.argument("url")
@click.argument("event_file", type=click.File("r"))
def send(url: str, event_file: IO[str]) -> None:
    """Deliver the event in EVENT_FILE (JSON, or - for stdin) to URL; print the delivery id."""
    from .tasks import deliver

    result = deliver.delay(url, _read_event(event_file))
    click.echo(result.id)


@main.command()
@click.argument("delivery_id")
@click.option("--json", "as_json", is_flag=True, help="Print the delivery as JSON.")
def show(delivery_id: str, as_json: bool) -> None:
    """Show one delivery and every attempt made for it."""
    delivery = get_store().get(delivery_id)
    if as_json:
        click.echo(delivery.model_dump_json(indent=2))
    else:
        console.print(attempts_table(delivery))


@main.command("list")
@click.option("--status", type=click.Choice([status.value for status in DeliveryStatus]),
              help="Only deliveries in this status.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_(status: str | None, limit: int, as_json: bool) -> None:
    """List deliveries, most recently changed first."""
    deliveries = get_store().recent(DeliveryStatus(status) if status else None, limit)
    if as_json:
        click.echo(json.dumps([d.model_dump(mode="json") for d in deliveries], indent=2))
    else:
        console.print(deliveries_table(deliveries))


@main.command()
@click.argument("event_file", type=click.File("r"))
@click.option("--json", "as_json", is_flag=True, help="Print the ids as a JSON object.")
def publish(event_file: IO[str], as_json: bool) -> None:
    """Send the event in EVENT_FILE to every enabled endpoint that wants it; print delivery ids."""
    from .publish import publish as publish_event

    event = _read_event(event_file)
    ids = publish_event(event)
    if as_json:
        click.echo(json.dumps({"event_id": event["id"], "delivery_ids": ids}))
    elif ids:
        click.echo("\n".join(ids))
    else:
        click.echo("no enabled endpoint accepts this event type; nothing sent", err=True)


@main.command()
@click.argument("delivery_id")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def redeliver(delivery_id: str, as_json: bool) -> None:
    """Start a new attempt cycle for a delivery, whatever its status (same webhook-id)."""
    from .replay import redeliver as redeliver_one

    redeliver_one(delivery_id)
    click.echo(json.dumps({"delivery_id": delivery_id, "redelivered": True}) if as_json
               else f"redelivering {delivery_id}")


@main.command()
@click.option("--endpoint", "endpoint_id", required=True, help="Endpoint id.")
@click.option("--since", required=True, type=Moment(),
              help="Start of the window: ISO-8601 (UTC if no offset) or a span ago: 90m, 6h, 2d.")
@click.option("--until", type=Moment(), help="End of the window (default: now), same forms.")
@click.option("--json", "as_json", is_flag=True, help="Print the ids as a JSON object.")
def recover(endpoint_id: str, since: datetime, until: datetime | None, as_json: bool) -> None:
    """Redeliver every retries_exhausted delivery of an endpoint created in the window."""
    from .replay import recover as recover_endpoint

    ids = recover_endpoint(endpoint_id, since, until)
    if as_json:
        click.echo(json.dumps({"endpoint_id": endpoint_id, "delivery_ids": ids}))
    else:
        click.echo(f"recovering {len(ids)} deliveries" + "".join(f"\n{i}" for i in ids))


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--no-auth", is_flag=True,
              help="Start Flower without authentication (only behind your own auth proxy).")
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower(no_auth: bool, flower_args: tuple[str, ...]) -> None:
    """Start Flower (`celery -A webhooks flower`), refusing to do so without basic auth.

    Flower shows every task and can revoke work, so it needs credentials:
    FLOWER_BASIC_AUTH=user:password (comma-separate several pairs). Other
    arguments go to Flower (e.g. --port=5555 --address=127.0.0.1).
    """
    credentials = os.environ.get("FLOWER_BASIC_AUTH", "")
    pairs = [pair.partition(":") for pair in credentials.split(",") if pair]
    if not no_auth:
        if not pairs:
            raise click.UsageError("FLOWER_BASIC_AUTH is not set; Flower would be open to "
                                   "anyone. Set it to user:password, or pass --no-auth.")
        if any(not user or not sep or len(password) < 8 for user, sep, password in pairs):
            raise click.UsageError("FLOWER_BASIC_AUTH must be user:password pairs, "
                                   "each password at least 8 characters")
    else:
        click.echo("warning: Flower starts without authentication (--no-auth)", err=True)
    command = [sys.executable, "-m", "celery", "-A", "webhooks", "flower", *flower_args]
    os.execv(sys.executable, command)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def stats(as_json: bool) -> None:
    """Deliveries by status, how many are overdue, and how many retries are parked."""
    numbers = get_store().stats(overdue_after=get_settings().recovery_seconds)
    if as_json:
        click.echo(json.dumps(numbers))
        return
    table = Table(show_header=False)
    for name, value in numbers.items():
        style = "red" if name == "overdue" and value else ""
        table.add_row(name, f"[{style}]{value:,}[/]" if style else f"{value:,}")
    console.print(table)
    click.echo(f"overdue: unfinished and more than {get_settings().recovery_seconds:g} s past "
               "their next_attempt_at; parked: retries waiting in Redis")


@main.command()
def schema() -> None:
    """Print the JSON Schema of every event type."""
    click.echo(json.dumps(event_schema(), indent=2))


@main.command()
@click.option("--retry-base", type=float, default=0.001, show_default=True,
              help="Retry base in seconds for the demo's worker.")
def demo(retry_base: float) -> None:
    """Run a worker and a flaky local receiver, and watch deliveries succeed, retry and exhaust."""
    from .demo import run_demo

    raise SystemExit(run_demo(console, retry_base))


main.add_command(endpoints)
