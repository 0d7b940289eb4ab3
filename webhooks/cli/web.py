"""``webhooks serve`` and ``webhooks portal-link``: the HTTP API, the console and the portal."""

from __future__ import annotations

import html
import logging
from typing import Any

import click

from .. import logs
from ..storage.cipher import warn_if_unencrypted
from ..system import get_default
from ..web.tokens import MAX_TTL_SECONDS, portal_token

__all__ = ["portal_link", "serve"]

#: The shortest operator token and portal secret ``serve`` accepts: a guessable one
#: would open every tenant's data.
MIN_TOKEN, MIN_SECRET = 24, 32

logger = logging.getLogger(__name__)


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0: every interface).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
def serve(host: str, port: int) -> None:
    """Run the HTTP API (/api/v1), the console (/console) and the portal (/portal).

    Needs WEBHOOKS_API_TOKEN (the operator's bearer token, at least 24 characters)
    and WEBHOOKS_PORTAL_SECRET (signs portal links, at least 32 characters).
    """
    settings = get_default().settings
    token, secret = settings.api_token, settings.portal_secret
    if token is None or len(token.get_secret_value()) < MIN_TOKEN:
        raise click.UsageError(
            f"WEBHOOKS_API_TOKEN must be set to at least {MIN_TOKEN} "
            "characters (try: openssl rand -hex 24)"
        )
    if secret is None or len(secret.get_secret_value()) < MIN_SECRET:
        raise click.UsageError(
            f"WEBHOOKS_PORTAL_SECRET must be set to at least {MIN_SECRET} "
            "characters (try: openssl rand -hex 32)"
        )
    if token.get_secret_value() == secret.get_secret_value():
        raise click.UsageError("WEBHOOKS_API_TOKEN and WEBHOOKS_PORTAL_SECRET must differ")
    # Imported here: the other commands start without loading the web stack.
    import uvicorn

    from ..web.app import create_app
    from ..web.server import bounded_protocol

    log_config: dict[str, Any] | None = uvicorn.config.LOGGING_CONFIG
    if settings.log_format == "json":
        logs.configure()  # uvicorn's lines too, once it is told to leave logging alone
        log_config = None
    warn_if_unencrypted(settings, logger)
    uvicorn.run(
        create_app(),
        host=host,
        port=port,
        server_header=False,
        proxy_headers=True,
        log_level="info",
        log_config=log_config,
        # uvicorn's own protocols bound neither a request's headers nor the time they
        # take to arrive: this one is its httptools protocol with those bounds.
        http=bounded_protocol(settings),
        timeout_keep_alive=settings.server_keep_alive_seconds,
    )


@click.command("portal-link")
@click.argument("tenant_id", metavar="TENANT")
@click.option(
    "--ttl",
    type=click.FloatRange(0, MAX_TTL_SECONDS, min_open=True),
    default=3600,
    show_default=True,
    help="Seconds the link is good for (at most 90 days).",
)
@click.option(
    "--base-url",
    default=None,
    metavar="URL",
    help="Where `webhooks serve` is reached [default: WEBHOOKS_PUBLIC_URL].",
)
@click.option(
    "--embed",
    is_flag=True,
    help="Print an <iframe> for a page on an origin WEBHOOKS_PORTAL_FRAME_ANCESTORS allows.",
)
def portal_link(tenant_id: str, ttl: float, base_url: str | None, embed: bool) -> None:
    """Print a link that opens TENANT's portal: its endpoints and deliveries.

    The token rides in the URL's fragment, which browsers never send to a server,
    and the page trades it for a session cookie at once (framed: for a session it
    keeps in memory).
    """
    settings = get_default().settings
    base = (base_url or settings.public_url).rstrip("/")
    if not base.lower().startswith(("http://", "https://")) or any(c in base for c in "#? "):
        raise click.BadParameter(
            f"must be an http(s) URL without a query or fragment, not {base[:100]!r}",
            param_hint="--base-url",
        )
    link = f"{base}/portal#token={portal_token(tenant_id, ttl)}"
    if embed:
        click.echo(embed_snippet(link, settings.portal_brand_name))
        if not settings.portal_frame_ancestors:
            click.echo(
                "warning: WEBHOOKS_PORTAL_FRAME_ANCESTORS is empty here: browsers refuse "
                "to frame the portal unless `webhooks serve` allows your page's origin",
                err=True,
            )
        return
    click.echo(link)


def embed_snippet(link: str, name: str | None) -> str:
    """The ``<iframe>`` that frames the portal at ``link``, escaped for HTML."""
    title = html.escape(f"{name or 'Webhooks'} portal", quote=True)
    return (
        f'<iframe src="{html.escape(link, quote=True)}" title="{title}" '
        'width="100%" height="720" referrerpolicy="no-referrer"></iframe>'
    )
