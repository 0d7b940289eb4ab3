"""What the HTTP API costs: a real ``webhooks serve`` process on a Redis server of its own.

    python -m bench.api [--requests 500]

One client on loopback, one request at a time (latency, not a load test): publishing
an event for a tenant of 2 endpoints (``POST .../events``), reading one page of 50
deliveries (``GET .../deliveries?limit=50``), the next page by its cursor, and one
delivery with its attempts (``GET .../deliveries/{id}``), each against the same call
made in Python in one process, so the figure to read is what HTTP adds.
No worker runs: the messages wait in the server's Redis.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from webhooks.dev.redis_server import RedisProcess, installed_server
from webhooks.dev.server import start_server, stop_server

TOKEN = "bench-operator-token-000000000000"
SECRET = "bench-portal-secret-0000000000000000000"


def _event() -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "screenshot_set.approved",
        "created_at": "2026-11-27T10:00:00Z",
        "data": {
            "screenshot_set": {
                "id": "set_1",
                "screenshots": [
                    {
                        "id": "shot_1",
                        "status": "uploaded",
                        "download_url": "https://cdn.example.com/1.png",
                        "ad": {"id": "ad_1", "status": "uploaded"},
                    }
                ],
            }
        },
    }


def _timed(call: Callable[[], object], count: int) -> list[float]:
    spent = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        spent.append((time.perf_counter() - start) * 1000)
    return spent


def _row(name: str, over_http: list[float], in_python: list[float]) -> str:
    def p(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100)[q - 1]

    return (
        f"{name:<34} HTTP p50 {p(over_http, 50):6.2f} ms  p99 {p(over_http, 99):6.2f} ms"
        f"   in Python p50 {p(in_python, 50):6.2f} ms   ({len(over_http)} each)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api")
    parser.add_argument("--requests", type=int, default=500)
    count = parser.parse_args().requests
    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisProcess(Path(tmp), binary=installed_server()) as server,
    ):
        env = {
            "WEBHOOKS_REDIS_URL": server.url,
            "WEBHOOKS_API_TOKEN": TOKEN,
            "WEBHOOKS_PORTAL_SECRET": SECRET,
        }
        os.environ.update(env)  # this process's own calls use the same Redis
        from webhooks import get_endpoints, get_store, get_tenants, publish

        process, base = start_server(Path(tmp) / "serve.log", env)
        try:
            get_tenants().add("acct_bench", "Bench")
            for k in range(2):
                get_endpoints().add(f"https://customer.example.com/hooks/{k}", tenant="acct_bench")
            http = requests.Session()
            http.headers["Authorization"] = f"Bearer {TOKEN}"
            api = f"{base}/api/v1/tenants/acct_bench"
            http.get(f"{base}/healthz").raise_for_status()  # warm the connection

            def post() -> object:
                answer = http.post(f"{api}/events", json=_event())
                answer.raise_for_status()
                return answer

            rows = [
                _row(
                    "publish (2 deliveries)",
                    _timed(post, count),
                    _timed(lambda: publish(_event(), tenant="acct_bench"), count),
                )
            ]
            first = http.get(f"{api}/deliveries?limit=50").json()
            cursor = first["next_cursor"]
            store = get_store()
            rows.append(
                _row(
                    "list 50, first page",
                    _timed(lambda: http.get(f"{api}/deliveries?limit=50").json(), count),
                    _timed(
                        lambda: store.summaries(store.page(limit=50, tenant="acct_bench")[0]), count
                    ),
                )
            )
            rows.append(
                _row(
                    "list 50, next page (cursor)",
                    _timed(
                        lambda: http.get(f"{api}/deliveries?limit=50&cursor={cursor}").json(), count
                    ),
                    _timed(
                        lambda: store.summaries(
                            store.page(
                                limit=50,
                                tenant="acct_bench",
                                after=store.page(limit=50, tenant="acct_bench")[1],
                            )[0]
                        ),
                        count,
                    ),
                )
            )
            one = first["data"][0]["id"]
            rows.append(
                _row(
                    "one delivery with its attempts",
                    _timed(lambda: http.get(f"{api}/deliveries/{one}").json(), count),
                    _timed(lambda: store.get(one, "acct_bench"), count),
                )
            )
        finally:
            stop_server(process)
    print(f"webhooks serve, one client on loopback, {count} requests each:")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
