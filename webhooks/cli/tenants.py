"""``webhooks tenants ...``: the producer's customers, each owning endpoints and deliveries."""

from __future__ import annotations

import json

import click
from rich.markup import escape
from rich.table import Table

from ..clock import isoformat
from ..models import Tenant
from ..storage.tenants import get_tenants
from .options import console, json_option

__all__ = ["tenants"]


def _table(found: list[Tenant]) -> Table:
    table = Table()
    for column in ("id", "name", "created_at"):
        table.add_column(column, overflow="fold")
    for tenant in found:
        table.add_row(escape(tenant.id), escape(tenant.name), isoformat(tenant.created_at))
    return table


def _emit(found: list[Tenant], as_json: bool, one: bool = False) -> None:
    if as_json:
        shown = [tenant.model_dump(mode="json") for tenant in found]
        click.echo(json.dumps(shown[0] if one else shown, indent=2))
    else:
        console.print(_table(found))


@click.group()
def tenants() -> None:
    """Manage tenants: the customers that endpoints and deliveries belong to."""


@tenants.command()
@click.argument("tenant_id", metavar="ID")
@click.option("--name", default="", help="A name for people.")
@json_option
def add(tenant_id: str, name: str, as_json: bool) -> None:
    """Register a tenant under your own id for the customer (such as acct_42)."""
    _emit([get_tenants().add(tenant_id, name)], as_json, one=True)


@tenants.command("list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--after", default=None, metavar="ID", help="Start after this id (paging).")
@json_option
def list_(limit: int, after: str | None, as_json: bool) -> None:
    """List tenants, ordered by id."""
    _emit(get_tenants().list(limit, after), as_json)


@tenants.command()
@click.argument("tenant_id", metavar="ID")
@json_option
def show(tenant_id: str, as_json: bool) -> None:
    """Show one tenant."""
    _emit([get_tenants().get(tenant_id)], as_json, one=True)


@tenants.command()
@click.argument("tenant_id", metavar="ID")
@json_option
def delete(tenant_id: str, as_json: bool) -> None:
    """Delete a tenant and everything it owns: endpoints, secrets and deliveries."""
    gone = get_tenants().delete(tenant_id)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "id": tenant_id,
                    "deleted": True,
                    "endpoints": gone.endpoints,
                    "deliveries": gone.deliveries,
                }
            )
        )
    else:
        click.echo(
            f"deleted tenant {tenant_id}: {gone.endpoints} endpoints and "
            f"{gone.deliveries} deliveries forgotten"
        )
