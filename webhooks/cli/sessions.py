"""``webhooks sessions ...``: the console's and the portal's signed-in browsers."""

from __future__ import annotations

import click

from ..errors import InvalidInput
from ..models import check_tenant_id
from ..system import get_default

__all__ = ["sessions"]


@click.group()
def sessions() -> None:
    """End the web sessions of the console and the portal."""


@sessions.command()
@click.option("--tenant", "tenant_id", metavar="T", help="End this tenant's portal sessions.")
@click.option("--all", "every", is_flag=True, help="End every session, the operator's included.")
def revoke(tenant_id: str | None, every: bool) -> None:
    """End sessions now: a tenant's (--tenant), or all of them (--all). Their browsers
    must sign in again, with a portal link or the operator's token that is good now."""
    if (tenant_id is None) == (not every):
        raise InvalidInput("--tenant/--all", "give exactly one of them")
    store = get_default().sessions
    if tenant_id is not None:
        check_tenant_id(tenant_id, "--tenant")
        ended = store.forget_tenant(tenant_id)
        click.echo(f"ended {ended} session{'s' * (ended != 1)} of tenant {tenant_id}")
    else:
        ended = store.revoke_all()
        click.echo(f"ended {ended} session{'s' * (ended != 1)}")
