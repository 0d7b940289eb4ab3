"""Take the README's pictures of the portal, from a real run: a worker, the server, a
receiver on 127.0.0.1 and Chromium, on Redis database 7 (flushed).

    python docs/screenshots.py        # writes docs/portal.png and docs/portal-delivery.png
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REDIS_URL = "redis://127.0.0.1:6379/7"
ENV = {
    "WEBHOOKS_REDIS_URL": REDIS_URL,
    "WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
    "WEBHOOKS_RETRY_BASE_SECONDS": "0.0005",
    "WEBHOOKS_RETRY_JITTER": "0",
    "WEBHOOKS_PARK_THRESHOLD_SECONDS": "0.1",
    "WEBHOOKS_BREAKER_FAILURES": "1000",
    "WEBHOOKS_API_TOKEN": "screenshots-operator-token-0000",
    "WEBHOOKS_PORTAL_SECRET": "screenshots-portal-secret-00000000000",
}
os.environ.update(ENV)

import redis  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

from webhooks import get_endpoints, get_store, get_tenants, portal_token, publish  # noqa: E402
from webhooks.dev.receiver import Receiver  # noqa: E402
from webhooks.dev.server import start_server, stop_server  # noqa: E402
from webhooks.dev.worker import start_worker, stop_worker  # noqa: E402
from webhooks.models import FINAL_STATUSES  # noqa: E402


def event(n: int) -> dict[str, object]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:12]}",
        "type": "screenshot_set.approved",
        "created_at": "2026-11-27T09:00:00Z",
        "data": {
            "screenshot_set": {
                "id": f"set_{n}",
                "name": f"Holiday campaign, set {n}",
                "screenshots": [
                    {
                        "id": f"shot_{n}",
                        "status": "uploaded",
                        "download_url": f"https://cdn.example.com/{n}.png",
                        "ad": {"id": "ad_7", "status": "uploaded"},
                    }
                ],
            }
        },
    }


def main() -> None:
    redis.Redis.from_url(REDIS_URL).flushdb()
    work = Path(tempfile.mkdtemp())
    with Receiver() as receiver:
        worker = start_worker(work / "worker.log", ENV, "--concurrency=4")
        server, base = start_server(work / "serve.log", ENV)
        try:
            tenant = "acct_northwind"
            get_tenants().add(tenant, "Northwind Ads")
            endpoints = get_endpoints()
            endpoints.add(receiver.url("/ok/production"), tenant=tenant, description="Production")
            endpoints.add(
                receiver.url("/fail/2/staging"),
                tenant=tenant,
                description="Staging: fails twice, then answers",
            )
            endpoints.add(
                receiver.url("/status/503/legacy"),
                tenant=tenant,
                description="Legacy importer (down)",
            )
            ids = []
            for n in range(1, 4):
                ids += publish(event(n), tenant=tenant)
                time.sleep(0.3)

            def settled(delivery_id: str) -> bool:
                # The legacy importer's keep retrying (and its circuit opens): two
                # attempts each are enough to show.
                delivery = get_store().get(delivery_id)
                return (
                    delivery.status in FINAL_STATUSES
                    if "legacy" not in delivery.url
                    else len(delivery.attempts) >= 2
                )

            deadline = time.monotonic() + 90
            while not all(settled(i) for i in ids):
                assert time.monotonic() < deadline, "the deliveries did not settle"
                time.sleep(0.2)
            flaky = next(i for i in reversed(ids) if len(get_store().get(i).attempts) == 3)

            options = Options()
            options.binary_location = shutil.which("chromium") or "chromium"
            for argument in (
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=1280,820",
                "--hide-scrollbars",
            ):
                options.add_argument(argument)
            browser = webdriver.Chrome(
                options=options, service=Service(shutil.which("chromedriver"))
            )
            try:
                browser.get(f"{base}/portal#token={portal_token(tenant)}")
                time.sleep(2)
                browser.save_screenshot(str(DOCS / "portal.png"))
                browser.get(f"{base}/portal/tenants/{tenant}/deliveries/{flaky}")
                time.sleep(2)
                browser.save_screenshot(str(DOCS / "portal-delivery.png"))
            finally:
                browser.quit()
        finally:
            stop_server(server)
            stop_worker(worker)
    redis.Redis.from_url(REDIS_URL).flushdb()
    print("wrote", DOCS / "portal.png", "and", DOCS / "portal-delivery.png")


if __name__ == "__main__":
    main()
