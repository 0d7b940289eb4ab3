"""``webhooks secrets ...``: endpoints' signing secrets and header values at rest."""

from __future__ import annotations

import json

import click

from ..storage.cipher import Resealed
from ..system import get_default
from .options import json_option

__all__ = ["secrets"]

#: Most unreadable endpoints the error line names; the count says how many there are.
_NAMED = 20


@click.group()
def secrets() -> None:
    """Endpoints' signing secrets and header values, encrypted at rest."""


@secrets.command()
@json_option
def reencrypt(as_json: bool) -> None:
    """Encrypt every stored secret and header value under the first key of
    WEBHOOKS_ENCRYPTION_KEYS: those under an older key, and those stored in clear.

    Safe to run again and while workers run. An endpoint with a value that no key
    decrypts is left as it was and named, and the command exits 1.
    """
    done = get_default().endpoints.reencrypt()
    counts = {was.value: done.values[was] for was in Resealed if was is not Resealed.UNREADABLE}
    if as_json:
        click.echo(
            json.dumps({"endpoints": done.endpoints, **counts, "unreadable": done.unreadable})
        )
    else:
        click.echo(
            f"{done.endpoints} endpoints: {counts['encrypted']} values encrypted from clear, "
            f"{counts['reencrypted']} moved from an older key, {counts['current']} under "
            f"the first key already, {len(done.unreadable)} endpoints unreadable"
        )
    if done.unreadable:
        named = ", ".join(done.unreadable[:_NAMED])
        more = len(done.unreadable) - _NAMED
        raise click.ClickException(
            f"{len(done.unreadable)} endpoints have a secret or header value that no key of "
            f"WEBHOOKS_ENCRYPTION_KEYS decrypts, left as they were: {named}"
            + (f" and {more} more" if more > 0 else "")
        )
