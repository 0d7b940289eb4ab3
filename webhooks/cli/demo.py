"""``webhooks demo``: the whole system on one machine, with a receiver that misbehaves."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import click
from rich.console import Console
from rich.live import Live

from .. import producer
from ..clock import isoformat, now
from ..dev.receiver import Receiver
from ..dev.redis_server import ensure_redis
from ..dev.worker import start_worker, stop_worker
from ..models import FINAL_STATUSES, DeliveryStatus
from ..settings import get_settings
from ..storage.deliveries import get_store
from .options import console
from .render import deliveries_table

__all__ = ["demo", "run_demo"]

_LOOPBACK = "127.0.0.0/8"


def _event(number: int) -> dict[str, object]:
    return {
        "id": f"evt_demo_{number}_{int(time.time())}",
        "type": "screenshot_set.approved",
        "created_at": isoformat(now()),
        "data": {
            "screenshot_set": {
                "id": f"set_{number}",
                "screenshots": [
                    {
                        "id": f"shot_{number}",
                        "status": "uploaded",
                        "site_url": "https://news.example.com/",
                        "download_url": f"https://cdn.example.com/shots/{number}.png",
                        "ad": {"id": f"ad_{number}", "status": "uploaded"},
                    }
                ],
            }
        },
    }


@click.command()
@click.option(
    "--retry-base",
    type=float,
    default=0.001,
    show_default=True,
    help="Retry base in seconds for the demo's worker.",
)
def demo(retry_base: float) -> None:
    """Run a worker and a flaky local receiver, and watch deliveries succeed, retry and exhaust."""
    raise SystemExit(run_demo(console, retry_base))


def run_demo(console: Console, retry_base: float, timeout: float = 120.0) -> int:
    """Deliveries that succeed, succeed after failures, and exhaust; 0 if they did."""
    # The receiver is on loopback, which the destination guard refuses by default.
    os.environ["WEBHOOKS_ALLOWED_NETWORKS"] = _LOOPBACK
    get_settings.cache_clear()
    settings = get_settings()
    with ensure_redis(settings.redis_url) as embedded, Receiver() as receiver:
        if embedded:
            console.print(f"No Redis answered at {settings.redis_url}: started an embedded one.")
        base = receiver.base
        fd, log_name = tempfile.mkstemp(prefix="webhooks-demo-worker-", suffix=".log")
        os.close(fd)
        log_path = Path(log_name)
        # The retry clock is compressed but the circuit breaker's is not: it would
        # park the failing delivery for 30 s and more, so the demo keeps it closed.
        worker = start_worker(
            log_path,
            {
                "WEBHOOKS_RETRY_BASE_SECONDS": str(retry_base),
                "WEBHOOKS_RETRY_JITTER": "0",
                "WEBHOOKS_ALLOWED_NETWORKS": _LOOPBACK,
                "WEBHOOKS_BREAKER_FAILURES": "1000",
            },
        )
        console.print(
            f"Worker started (log: {log_path}); receiver at {base}; "
            f"retry base {retry_base} s, so 15 attempts span "
            f"{retry_base * (2**14 - 1):.1f} s."
        )
        # /fail/3 fails three times per delivery, then answers 200.
        plan = (
            [("/ok", DeliveryStatus.DELIVERED, 1)] * 2
            + [("/fail/3", DeliveryStatus.DELIVERED, 4)] * 2
            + [("/status/500", DeliveryStatus.RETRIES_EXHAUSTED, 15)]
        )
        try:
            ids = [producer.send(base + path, _event(n)) for n, (path, _, _) in enumerate(plan)]
            store = get_store()
            deadline = time.monotonic() + timeout
            with Live(console=console, refresh_per_second=4) as live:
                while True:
                    deliveries = [store.get(delivery_id) for delivery_id in ids]
                    live.update(deliveries_table(deliveries, title="Deliveries", compact=True))
                    done = all(d.status in FINAL_STATUSES for d in deliveries)
                    if done or time.monotonic() > deadline:
                        break
                    time.sleep(0.25)
        finally:
            stop_worker(worker)
    console.print()
    expected = [(status, attempts) for _, status, attempts in plan]
    got = [(d.status, len(d.attempts)) for d in deliveries]
    if got == expected:
        console.print(
            "[green]As expected:[/] 4 delivered (2 of them after 3 failures), "
            "1 retries_exhausted after 15 attempts."
        )
        return 0
    console.print(f"[red]Unexpected outcome:[/] {got} (wanted {expected}); see {log_path}")
    return 1
