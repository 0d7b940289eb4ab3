"""``webhooks send|publish|show|list|redeliver|skip|recover|stats|schema|event-types``:
deliveries, and the events they carry."""

from __future__ import annotations

import json
from datetime import datetime
from typing import IO

import click
from rich.table import Table

from ..events import catalog, event_schema, load_event_modules
from ..models import DeliveryStatus
from ..producer import Producer
from ..system import get_default
from .options import Moment, console, json_option, read_event
from .render import attempts_table, deliveries_table

__all__ = [
    "event_types",
    "list_",
    "publish",
    "recover",
    "redeliver",
    "schema",
    "send",
    "show",
    "skip",
    "stats",
]


@click.command()
@click.argument("url")
@click.argument("event_file", type=click.File("rb"))
def send(url: str, event_file: IO[bytes]) -> None:
    """Deliver the event in EVENT_FILE (JSON, or - for stdin) to URL; print the delivery id."""
    click.echo(Producer(get_default()).deliver_one(url, read_event(event_file)))


tenant_option = click.option(
    "--tenant",
    default=None,
    metavar="T",
    help="The delivery's tenant: another tenant's delivery is not found.",
)


@click.command()
@click.argument("delivery_id")
@tenant_option
@click.option("--json", "as_json", is_flag=True, help="Print the delivery as JSON.")
def show(delivery_id: str, tenant: str | None, as_json: bool) -> None:
    """Show one delivery and every attempt made for it."""
    delivery = get_default().deliveries.get(delivery_id, tenant)
    if as_json:
        click.echo(delivery.model_dump_json(indent=2))
    else:
        console.print(attempts_table(delivery))


@click.command("list")
@click.option(
    "--status",
    type=click.Choice([status.value for status in DeliveryStatus]),
    help="Only deliveries in this status.",
)
@click.option("--tenant", default=None, metavar="T", help="Only this tenant's deliveries.")
@click.option(
    "--endpoint", "endpoint_id", default=None, metavar="E", help="Only this endpoint's deliveries."
)
@click.option(
    "--event-id",
    default=None,
    metavar="EVT",
    help="Only the deliveries of this event (the producer's event id), one per endpoint.",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_(
    status: str | None,
    tenant: str | None,
    endpoint_id: str | None,
    event_id: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List deliveries, newest first: by creation, or with --status by when they reached it.
    Archived deliveries are listed as the others are."""
    system = get_default()
    if tenant is not None:
        system.tenants.get(tenant)
    if endpoint_id is not None:
        system.endpoints.get(endpoint_id, tenant)  # another tenant's: not found
    if event_id is not None:
        found = [
            (delivery, count)
            for delivery, count in system.deliveries.by_event(event_id, tenant)
            if (status is None or delivery.status == status)
            and (endpoint_id is None or delivery.endpoint_id == endpoint_id)
        ][:limit]
        deliveries = system.deliveries.full([delivery.id for delivery, _ in found])
    else:
        deliveries = system.deliveries.recent(
            DeliveryStatus(status) if status else None,
            limit,
            tenant=tenant,
            endpoint_id=endpoint_id,
        )
    if as_json:
        click.echo(json.dumps([d.model_dump(mode="json") for d in deliveries], indent=2))
    else:
        console.print(deliveries_table(deliveries))


@click.command()
@click.argument("event_file", type=click.File("rb"))
@click.option("--tenant", required=True, metavar="T", help="The tenant the event is about.")
@click.option(
    "--ordering-key",
    default=None,
    metavar="K",
    help="Deliver in publish order with the other events of this key, per endpoint.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the ids as a JSON object.")
def publish(event_file: IO[bytes], tenant: str, ordering_key: str | None, as_json: bool) -> None:
    """Send the event in EVENT_FILE to every enabled endpoint of the tenant that wants it;
    print the delivery ids."""
    event = read_event(event_file)
    ids = Producer(get_default()).publish(event, tenant=tenant, ordering_key=ordering_key)
    if as_json:
        click.echo(json.dumps({"event_id": event["id"], "tenant_id": tenant, "delivery_ids": ids}))
    elif ids:
        click.echo("\n".join(ids))
    else:
        click.echo(
            "no enabled endpoint of this tenant accepts this event type; nothing sent", err=True
        )


@click.command()
@click.argument("delivery_id")
@tenant_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def redeliver(delivery_id: str, tenant: str | None, as_json: bool) -> None:
    """Start a new attempt cycle for a delivery, whatever its status (same webhook-id)."""
    Producer(get_default()).redeliver(delivery_id, tenant=tenant)
    click.echo(
        json.dumps({"delivery_id": delivery_id, "redelivered": True})
        if as_json
        else f"redelivering {delivery_id}"
    )


@click.command()
@click.argument("delivery_id")
@tenant_option
@click.option("--json", "as_json", is_flag=True, help="Print the delivery as JSON.")
def skip(delivery_id: str, tenant: str | None, as_json: bool) -> None:
    """Give up on an unfinished delivery: mark it retries_exhausted, and start the next
    delivery of its ordering key, which waited behind it."""
    delivery = get_default().deliveries.skip(delivery_id, tenant)
    if as_json:
        click.echo(delivery.model_dump_json(indent=2))
    else:
        click.echo(f"skipped {delivery_id}: retries_exhausted")


@click.command()
@click.option("--endpoint", "endpoint_id", required=True, help="Endpoint id.")
@click.option(
    "--since",
    required=True,
    type=Moment(),
    help="Start of the window: ISO-8601 (UTC if no offset) or a span ago: 90m, 6h, 2d.",
)
@click.option("--until", type=Moment(), help="End of the window (default: now), same forms.")
@click.option(
    "--tenant",
    default=None,
    metavar="T",
    help="The endpoint's tenant: another tenant's endpoint is not found.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the ids as a JSON object.")
def recover(
    endpoint_id: str, since: datetime, until: datetime | None, tenant: str | None, as_json: bool
) -> None:
    """Redeliver every retries_exhausted delivery of an endpoint created in the window."""
    ids = Producer(get_default()).recover(endpoint_id, since, until, tenant=tenant)
    if as_json:
        click.echo(json.dumps({"endpoint_id": endpoint_id, "delivery_ids": ids}))
    else:
        click.echo(f"recovering {len(ids)} deliveries" + "".join(f"\n{i}" for i in ids))


@click.command()
@click.option("--tenant", default=None, metavar="T", help="Only this tenant's deliveries.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def stats(tenant: str | None, as_json: bool) -> None:
    """Deliveries by status, how many are overdue, and (for all) how many retries are parked."""
    if tenant is not None:
        get_default().tenants.get(tenant)
    numbers = get_default().deliveries.stats(
        overdue_after=get_default().settings.recovery_seconds, tenant=tenant
    )
    if as_json:
        click.echo(json.dumps(numbers))
        return
    table = Table(show_header=False)
    for name, value in numbers.items():
        style = "red" if name == "overdue" and value else ""
        table.add_row(name, f"[{style}]{value:,}[/]" if style else f"{value:,}")
    console.print(table)
    click.echo(
        f"overdue: unfinished and more than {get_default().settings.recovery_seconds:g} s past "
        "their next_attempt_at; parked: retries waiting in Redis"
    )


@click.command()
def schema() -> None:
    """Print the JSON Schema of every event type (those WEBHOOKS_EVENT_MODULES register)."""
    load_event_modules(get_default().settings.event_modules)
    click.echo(json.dumps(event_schema(), indent=2))


@click.command("event-types")
@json_option
def event_types(as_json: bool) -> None:
    """List the event types endpoints can subscribe to (those WEBHOOKS_EVENT_MODULES
    register); with --json, each with its JSON Schema and example, as the API gives."""
    load_event_modules(get_default().settings.event_modules)
    found = catalog()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    table = Table("Type", "Description", "Example")
    for entry in found:
        table.add_row(
            entry["type"], entry["description"], "yes" if entry["example"] else "[red]none[/]"
        )
    console.print(table)
