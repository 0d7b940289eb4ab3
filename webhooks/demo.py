"""``webhooks demo``: the whole system on one machine, with a receiver that misbehaves."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

from rich.console import Console
from rich.live import Live

from .clock import isoformat, now
from .devredis import ensure_redis
from .devworker import start_worker, stop_worker
from .models import FINAL_STATUSES, DeliveryStatus
from .render import deliveries_table
from .settings import get_settings
from .store import get_store

__all__ = ["run_demo"]

_LOOPBACK = "127.0.0.0/8"


class _DemoReceiver(BaseHTTPRequestHandler):
    """``/ok`` answers 200; ``/flaky?fail=N`` answers 503 N times per webhook-id; ``/down`` 500."""

    seen: ClassVar[Counter[str]] = Counter()
    lock: ClassVar[threading.Lock] = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        path = urlsplit(self.path)
        with self.lock:
            self.seen[self.headers["webhook-id"]] += 1
            count = self.seen[self.headers["webhook-id"]]
        if path.path == "/ok":
            code = 200
        elif path.path == "/flaky":
            code = 503 if count <= int(parse_qs(path.query).get("fail", ["2"])[0]) else 200
        else:
            code = 500
        body = b'{"received": true}' if code == 200 else b'{"error": "try again later"}'
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


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


def run_demo(console: Console, retry_base: float, timeout: float = 120.0) -> int:
    os.environ["WEBHOOKS_ALLOWED_NETWORKS"] = _LOOPBACK
    get_settings.cache_clear()
    from .tasks import deliver

    settings = get_settings()
    with ensure_redis(settings.redis_url) as embedded:
        if embedded:
            console.print(f"No Redis answered at {settings.redis_url}: started an embedded one.")
        server = ThreadingHTTPServer(("127.0.0.1", 0), _DemoReceiver)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        fd, log_name = tempfile.mkstemp(prefix="webhooks-demo-worker-", suffix=".log")
        os.close(fd)
        log_path = Path(log_name)
        # The receiver is on loopback, which the destination guard refuses by default.
        # The retry clock is compressed but the circuit breaker's is not: it would
        # park the failing delivery for 30 s and more, so the demo keeps it closed.
        worker = start_worker(log_path, {"WEBHOOKS_RETRY_BASE_SECONDS": str(retry_base),
                                         "WEBHOOKS_RETRY_JITTER": "0",
                                         "WEBHOOKS_ALLOWED_NETWORKS": _LOOPBACK,
                                         "WEBHOOKS_BREAKER_FAILURES": "1000"})
        console.print(f"Worker started (log: {log_path}); receiver at {base}; "
                      f"retry base {retry_base} s, so 15 attempts span "
                      f"{retry_base * (2**14 - 1):.1f} s.")
        plan = [("/ok", DeliveryStatus.DELIVERED, 1)] * 2 + [
            ("/flaky?fail=3", DeliveryStatus.DELIVERED, 4)] * 2 + [
            ("/down", DeliveryStatus.RETRIES_EXHAUSTED, 15)]
        try:
            ids = [deliver.delay(base + path, _event(n)).id for n, (path, _, _) in enumerate(plan)]
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
            server.shutdown()
    console.print()
    expected = [(status, attempts) for _, status, attempts in plan]
    got = [(d.status, len(d.attempts)) for d in deliveries]
    if got == expected:
        console.print("[green]As expected:[/] 4 delivered (2 of them after 3 failures), "
                      "1 retries_exhausted after 15 attempts.")
        return 0
    console.print(f"[red]Unexpected outcome:[/] {got} (wanted {expected}); see {log_path}")
    return 1
