"""``webhooks endpoints ...``: register, inspect, disable and rotate endpoints."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import click
from rich.table import Table

from ..clock import isoformat
from ..models import Endpoint
from ..settings import get_settings
from ..storage.endpoints import get_endpoints
from .options import console, json_option


def _status(endpoint: Endpoint) -> str:
    if endpoint.enabled:
        return "[green]enabled[/]"
    since = isoformat(endpoint.disabled_at) if endpoint.disabled_at else "?"
    return f"[red]disabled[/] since {since}: {endpoint.disabled_reason}"


def _table(endpoints: list[Endpoint]) -> Table:
    table = Table()
    for column in ("id", "url", "events", "status", "secrets", "description"):
        table.add_column(column, overflow="fold")
    for endpoint in endpoints:
        shown = endpoint.public()
        table.add_row(
            endpoint.id, endpoint.url, ", ".join(endpoint.event_types or ["(all)"]),
            _status(endpoint), " ".join(s["secret"] for s in shown["secrets"]),
            endpoint.description,
        )
    return table


def _emit(endpoint: Endpoint, as_json: bool, secret: str | None = None) -> None:
    """Print one endpoint; ``secret`` is a new secret, the only time it is ever shown."""
    if as_json:
        shown: dict[str, Any] = endpoint.public()
        if secret is not None:
            shown["secret"] = secret
        click.echo(json.dumps(shown, indent=2))
        return
    console.print(_table([endpoint]))
    if secret is not None:
        click.echo(f"Signing secret (shown once, store it now): {secret}")


@click.group()
def endpoints() -> None:
    """Manage the endpoints that publish fans events out to."""


@endpoints.command()
@click.argument("url")
@click.option("--event", "event_types", multiple=True, metavar="TYPE",
              help="Only send this event type (repeatable). Default: every type.")
@click.option("--description", default="", help="A note for people.")
@json_option
def add(url: str, event_types: tuple[str, ...], description: str, as_json: bool) -> None:
    """Register URL; prints the endpoint id and its signing secret, once."""
    endpoint, secret = get_endpoints().add(url, list(event_types) or None, description)
    _emit(endpoint, as_json, secret)


@endpoints.command("list")
@json_option
def list_(as_json: bool) -> None:
    """List endpoints (secrets masked)."""
    found = get_endpoints().all()
    if as_json:
        click.echo(json.dumps([endpoint.public() for endpoint in found], indent=2))
    else:
        console.print(_table(found))


@endpoints.command()
@click.argument("endpoint_id")
@json_option
def show(endpoint_id: str, as_json: bool) -> None:
    """Show one endpoint (secrets masked)."""
    _emit(get_endpoints().get(endpoint_id), as_json)


@endpoints.command()
@click.argument("endpoint_id")
@click.option("--reason", default="disabled by an operator", show_default=True)
@json_option
def disable(endpoint_id: str, reason: str, as_json: bool) -> None:
    """Stop sending to the endpoint; its unfinished deliveries stop retrying."""
    _emit(get_endpoints().disable(endpoint_id, reason), as_json)


@endpoints.command()
@click.argument("endpoint_id")
@json_option
def enable(endpoint_id: str, as_json: bool) -> None:
    """Send to the endpoint again (see `webhooks recover` for what it missed)."""
    _emit(get_endpoints().enable(endpoint_id), as_json)


@endpoints.command("rotate-secret")
@click.argument("endpoint_id")
@click.option("--grace", type=click.FloatRange(min=0), default=None,
              help="Seconds the old secret keeps signing beside the new one "
                   "[default: WEBHOOKS_SECRET_ROTATION_GRACE_SECONDS, 24 h].")
@json_option
def rotate_secret(endpoint_id: str, grace: float | None, as_json: bool) -> None:
    """Add a new signing secret and print it once; the old one expires after the grace."""
    seconds = get_settings().secret_rotation_grace_seconds if grace is None else grace
    endpoint, secret = get_endpoints().rotate_secret(endpoint_id, timedelta(seconds=seconds))
    _emit(endpoint, as_json, secret)


@endpoints.command()
@click.argument("endpoint_id")
@json_option
def delete(endpoint_id: str, as_json: bool) -> None:
    """Delete the endpoint; its unfinished deliveries stop when they next come due."""
    get_endpoints().delete(endpoint_id)
    click.echo(json.dumps({"id": endpoint_id, "deleted": True}) if as_json
               else f"deleted {endpoint_id}")
