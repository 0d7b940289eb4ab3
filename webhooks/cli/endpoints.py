"""``webhooks endpoints ...``: register, inspect, disable and rotate endpoints."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ..clock import isoformat
from ..errors import InvalidInput
from ..models import Endpoint
from ..producer import Producer
from ..storage.endpoints import MAX_RATE_LIMIT, check_rate_limit
from ..system import get_default
from .options import console, json_option

tenant_option = click.option(
    "--tenant",
    default=None,
    metavar="T",
    help="The endpoint's tenant: another tenant's endpoint is not found.",
)


def _status(endpoint: Endpoint) -> str:
    if endpoint.enabled:
        return "[green]enabled[/]"
    since = isoformat(endpoint.disabled_at) if endpoint.disabled_at else "?"
    return f"[red]disabled[/] since {since}: {escape(endpoint.disabled_reason or '')}"


def _table(endpoints: list[Endpoint]) -> Table:
    """Endpoints a row each; customers typed most of it, so it is shown, not interpreted."""
    table = Table()
    for column in ("id", "tenant", "url", "events", "status", "description"):
        table.add_column(column, overflow="fold")
    for endpoint in endpoints:
        table.add_row(
            endpoint.id,
            escape(endpoint.tenant_id or ""),
            escape(endpoint.url),
            ", ".join(endpoint.event_types or ["(all)"]),
            _status(endpoint),
            escape(endpoint.description),
        )
    return table


def _pace(endpoint: Endpoint) -> dict[str, Any] | None:
    """The pace adaptive pacing holds the endpoint at, as shown; None: at its limits."""
    pace = get_default().gate.pace_of(endpoint.id)
    return pace.public() if pace is not None else None


def _pace_line(pace: dict[str, Any] | None) -> str:
    if pace is None:
        return "at its limits"
    rate = f"{pace['rate']:g}/s, " if pace["rate"] is not None else ""
    return f"{rate}{pace['concurrency']} in flight (lowered at {pace['since']})"


def _detail(endpoint: Endpoint) -> Table:
    """One endpoint, a field a line."""
    shown = endpoint.public()
    table = Table(show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in (
        ("id", endpoint.id),
        ("tenant", escape(endpoint.tenant_id or "")),
        ("url", escape(endpoint.url)),
        ("events", ", ".join(endpoint.event_types or ["(all)"])),
        ("status", _status(endpoint)),
        (
            "headers",
            escape(", ".join(f"{name}: {masked}" for name, masked in shown["headers"].items())),
        ),
        ("secrets", " ".join(s["secret"] for s in shown["secrets"])),
        ("description", escape(endpoint.description)),
        ("rate_limit", "none" if endpoint.rate_limit is None else f"{endpoint.rate_limit:g}/s"),
        ("pace", _pace_line(_pace(endpoint))),
        ("created_at", isoformat(endpoint.created_at)),
    ):
        table.add_row(name, value)
    return table


def _emit(endpoint: Endpoint, as_json: bool, secret: str | None = None) -> None:
    """Print one endpoint; ``secret`` is a new secret, the only time it is ever shown."""
    if as_json:
        shown: dict[str, Any] = {**endpoint.public(), "pace": _pace(endpoint)}
        if secret is not None:
            shown["secret"] = secret
        click.echo(json.dumps(shown, indent=2))
        return
    console.print(_detail(endpoint))
    if secret is not None:
        click.echo(f"Signing secret (shown once, store it now): {secret}")


def _header(value: str) -> tuple[str, str]:
    name, colon, text = value.partition(":")
    if not colon:
        raise click.BadParameter(f"{value[:40]!r} is not 'Name: value'", param_hint="--header")
    return name.strip(), text.strip()


class RateLimit(click.ParamType[float | None]):
    """Deliveries a second, or ``none`` for no limit; the store says what it refuses."""

    name = "N|none"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float | None:
        if value is None or isinstance(value, float):
            return value
        text = str(value).strip()
        if text.lower() == "none":
            return None
        try:
            return check_rate_limit(float(text))
        except ValueError as exc:  # InvalidInput is one
            shown = repr(text[:40])
            self.fail(
                str(exc).removeprefix("rate_limit: ")
                if isinstance(exc, InvalidInput)
                else f"{shown} is not a number of deliveries a second (or none)",
                param,
                ctx,
            )


rate_limit_option = click.option(
    "--rate-limit",
    type=RateLimit(),
    default=None,
    help="Deliveries a second at most, across all workers (a positive number up to "
    f"{MAX_RATE_LIMIT:,}); none: no limit. Deliveries over it wait their turn "
    "without using an attempt.",
)


@click.group()
def endpoints() -> None:
    """Manage the endpoints that publish fans events out to."""


@endpoints.command()
@click.argument("url")
@click.option("--tenant", required=True, metavar="T", help="The tenant the endpoint belongs to.")
@click.option(
    "--event",
    "event_types",
    multiple=True,
    metavar="TYPE",
    help="Only send this event type (repeatable). Default: every type.",
)
@click.option("--description", default="", help="A note for people.")
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="A header sent with every attempt, such as the customer's own token "
    "(repeatable; shown masked).",
)
@rate_limit_option
@json_option
def add(
    url: str,
    tenant: str,
    event_types: tuple[str, ...],
    description: str,
    headers: tuple[str, ...],
    rate_limit: float | None,
    as_json: bool,
) -> None:
    """Register URL for a tenant; prints the endpoint id and its signing secret, once."""
    endpoint, secret = get_default().endpoints.add(
        url,
        list(event_types) or None,
        description,
        tenant=tenant,
        headers=_headers(headers),
        rate_limit=rate_limit,
    )
    _emit(endpoint, as_json, secret)


def _headers(values: tuple[str, ...]) -> dict[str, str]:
    pairs = [_header(value) for value in values]
    extra = dict(pairs)
    if len(extra) < len(pairs):
        raise click.BadParameter("a header name is given twice", param_hint="--header")
    return extra


@endpoints.command()
@click.argument("endpoint_id")
@click.option("--url", default=None, help="Where to POST events.")
@click.option(
    "--event",
    "event_types",
    multiple=True,
    metavar="TYPE",
    help="Only send these event types from now on (repeatable; replaces the list).",
)
@click.option("--all-events", is_flag=True, help="Send every event type from now on.")
@click.option("--description", default=None, help="A note for people.")
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="A header sent with every attempt (repeatable; replaces them all).",
)
@click.option("--no-headers", is_flag=True, help="Send no headers of the endpoint's own.")
@rate_limit_option
@click.option(
    "--enable/--disable",
    "enabled",
    default=None,
    help="Send to the endpoint again, or stop (its unfinished deliveries stop retrying).",
)
@tenant_option
@json_option
def update(
    endpoint_id: str,
    url: str | None,
    event_types: tuple[str, ...],
    all_events: bool,
    description: str | None,
    headers: tuple[str, ...],
    no_headers: bool,
    rate_limit: float | None,
    enabled: bool | None,
    tenant: str | None,
    as_json: bool,
) -> None:
    """Change an endpoint: only the options given change (as PATCH on the API does);
    every value is checked before anything is written."""
    if event_types and all_events:
        raise click.UsageError("--event and --all-events do not go together")
    if headers and no_headers:
        raise click.UsageError("--header and --no-headers do not go together")
    changes: dict[str, Any] = {}
    if url is not None:
        changes["url"] = url
    if event_types or all_events:
        changes["event_types"] = list(event_types) or None
    if description is not None:
        changes["description"] = description
    if headers or no_headers:
        changes["headers"] = _headers(headers)
    source = click.get_current_context().get_parameter_source("rate_limit")
    if source is not click.core.ParameterSource.DEFAULT:
        changes["rate_limit"] = rate_limit
    store = get_default().endpoints
    endpoint = store.get(endpoint_id, tenant)
    if changes:
        endpoint = store.update(endpoint_id, changes, tenant)
    if enabled is True and not endpoint.enabled:
        endpoint = store.enable(endpoint_id, tenant)
    elif enabled is False and endpoint.enabled:
        endpoint = store.disable(endpoint_id, "disabled by an operator", tenant=tenant)
    _emit(endpoint, as_json)


@endpoints.command("list")
@click.option("--tenant", default=None, metavar="T", help="Only this tenant's endpoints.")
@json_option
def list_(tenant: str | None, as_json: bool) -> None:
    """List endpoints (secrets and header values masked)."""
    found = get_default().endpoints.all(tenant)
    if as_json:
        click.echo(json.dumps([endpoint.public() for endpoint in found], indent=2))
    else:
        console.print(_table(found))


@endpoints.command()
@click.argument("endpoint_id")
@tenant_option
@json_option
def show(endpoint_id: str, tenant: str | None, as_json: bool) -> None:
    """Show one endpoint (secrets and header values masked)."""
    _emit(get_default().endpoints.get(endpoint_id, tenant), as_json)


@endpoints.command()
@click.argument("endpoint_id")
@click.option("--reason", default="disabled by an operator", show_default=True)
@tenant_option
@json_option
def disable(endpoint_id: str, reason: str, tenant: str | None, as_json: bool) -> None:
    """Stop sending to the endpoint; its unfinished deliveries stop retrying."""
    _emit(get_default().endpoints.disable(endpoint_id, reason, tenant=tenant), as_json)


@endpoints.command()
@click.argument("endpoint_id")
@tenant_option
@json_option
def enable(endpoint_id: str, tenant: str | None, as_json: bool) -> None:
    """Send to the endpoint again (see `webhooks recover` for what it missed)."""
    _emit(get_default().endpoints.enable(endpoint_id, tenant), as_json)


@endpoints.command("rotate-secret")
@click.argument("endpoint_id")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds the old secret keeps signing beside the new one "
    "[default: WEBHOOKS_SECRET_ROTATION_GRACE_SECONDS, 24 h].",
)
@tenant_option
@json_option
def rotate_secret(endpoint_id: str, grace: float | None, tenant: str | None, as_json: bool) -> None:
    """Add a new signing secret and print it once; the old one expires after the grace."""
    seconds = get_default().settings.secret_rotation_grace_seconds if grace is None else grace
    endpoint, secret = get_default().endpoints.rotate_secret(
        endpoint_id, timedelta(seconds=seconds), tenant
    )
    _emit(endpoint, as_json, secret)


@endpoints.command()
@click.argument("endpoint_id")
@tenant_option
@json_option
def delete(endpoint_id: str, tenant: str | None, as_json: bool) -> None:
    """Delete the endpoint; its unfinished deliveries stop retrying."""
    get_default().endpoints.delete(endpoint_id, tenant)
    click.echo(
        json.dumps({"id": endpoint_id, "deleted": True}) if as_json else f"deleted {endpoint_id}"
    )


@endpoints.command("test")
@click.argument("endpoint_id")
@click.option(
    "--event",
    "event_type",
    default=None,
    metavar="TYPE",
    help="The registered type whose catalog example is sent [default: the endpoint's first type].",
)
@tenant_option
@json_option
def test(endpoint_id: str, event_type: str | None, tenant: str | None, as_json: bool) -> None:
    """Send the endpoint a test event: the catalog's example, as a real delivery
    (signed, recorded, retried; marked as a test). Prints the delivery id."""
    delivery_id = Producer(get_default()).send_test(endpoint_id, event_type, tenant=tenant)
    click.echo(
        json.dumps({"delivery_id": delivery_id})
        if as_json
        else f"test event sent: delivery {delivery_id} (see `webhooks show {delivery_id}`)"
    )
