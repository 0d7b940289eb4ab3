"""Bounded attempts, measured: slow receivers against the deadline, a 50 MB answer against RSS.

    python -m bench.bounded

Uses the Redis at WEBHOOKS_REDIS_URL (default redis://127.0.0.1:6379/13; an
embedded one if none answers), a real worker and the test receiver on 127.0.0.1.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WEBHOOKS_REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ["WEBHOOKS_ALLOWED_NETWORKS"] = "127.0.0.0/8"

from bench.scenarios import one_kb_event
from webhooks import deliver
from webhooks.dev.receiver import Receiver
from webhooks.dev.redis_server import ensure_redis
from webhooks.dev.worker import start_worker, stop_worker, tree_rss_kb
from webhooks.models import FINAL_STATUSES
from webhooks.storage.deliveries import get_store

TIMEOUT = 1.0


def finished(delivery_id: str) -> object:
    while (delivery := get_store().get(delivery_id)).status not in FINAL_STATUSES:
        time.sleep(0.02)
    return delivery


def main() -> None:
    url = os.environ["WEBHOOKS_REDIS_URL"]
    with ensure_redis(url), Receiver() as receiver, tempfile.TemporaryDirectory() as tmp:
        worker = start_worker(
            Path(tmp) / "worker.log",
            {
                "WEBHOOKS_TIMEOUT_SECONDS": str(TIMEOUT),
                "WEBHOOKS_RETRY_BASE_SECONDS": "0.001",
                "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
            },
            "--concurrency=4",
        )
        try:
            print(f"attempt deadline {TIMEOUT:.1f} s")
            for path in ("/drip-once", "/slow-headers-once"):
                delivery = finished(deliver.delay(receiver.url(path), one_kb_event()).id)
                first = delivery.attempts[0]  # type: ignore[attr-defined]
                print(
                    f"  {path:<20} first attempt: {first.error.kind}, "
                    f"{first.duration_ms / 1000:.2f} s"
                )
            for _ in range(8):
                finished(deliver.delay(receiver.url("/ok"), one_kb_event()).id)
            before = tree_rss_kb(worker.pid)
            for _ in range(8):
                finished(deliver.delay(receiver.url("/huge50"), one_kb_event()).id)
            after = tree_rss_kb(worker.pid)
            print(
                f"8 answers of 50 MB: worker tree RSS {before / 1024:.1f} MB -> "
                f"{after / 1024:.1f} MB ({(after - before) / 1024:+.1f} MB)"
            )
        finally:
            stop_worker(worker)


if __name__ == "__main__":
    main()
