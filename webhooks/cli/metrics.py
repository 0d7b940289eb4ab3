"""``webhooks metrics-server``: the Prometheus metrics, for deployments without
``webhooks serve``."""

from __future__ import annotations

import click
from prometheus_client import start_http_server

from ..metrics import registry

__all__ = ["metrics_server"]


@click.command("metrics-server")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0: every interface).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=9808, show_default=True)
def metrics_server(host: str, port: int) -> None:
    """Serve the cluster's Prometheus metrics at http://HOST:PORT/metrics.

    The figures are the whole cluster's, read from Redis and the broker at each
    scrape: one server is enough, wherever it runs. There is no authentication
    (the figures name no tenant, endpoint or URL): listen where only your
    scraper reaches, or use `webhooks serve`'s /metrics, which takes the
    operator's token.
    """
    server, thread = start_http_server(port, addr=host, registry=registry())
    click.echo(f"serving metrics at http://{host}:{port}/metrics", err=True)
    try:
        while thread.is_alive():
            thread.join(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
