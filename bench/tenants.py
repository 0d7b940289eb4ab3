"""What one publish costs Redis, with few tenants and with many.

    python -m bench.tenants [--many 10000]

Seeds tenants of 2 endpoints each in a Redis server of its own (so that its
counters count only this), then publishes one event for one tenant from a fresh
process, and reads the server's counters around it: the commands run and the
bytes sent back to the client. Once with 10 tenants, once with ``--many``.
Publishing reads the tenant's own endpoint set, never the list of all endpoints,
so both figures should not move.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis

from webhooks.dev.redis_server import RedisProcess, installed_server

_PUBLISH = """
import json, sys
from webhooks import publish
event, tenant = json.load(sys.stdin)
print(len(publish(event, tenant=tenant)))
"""
_SEED = """
import sys
from webhooks import get_endpoints, get_tenants
first, count = int(sys.argv[1]), int(sys.argv[2])
for n in range(first, first + count):
    tenant = f"acct_{n:06d}"
    get_tenants().add(tenant)
    for k in range(2):
        get_endpoints().add(f"https://customer-{n:06d}.example.com/hooks/{k}", tenant=tenant)
"""


def _event(number: int) -> dict[str, Any]:
    return {
        "id": f"evt_tenants_{number}",
        "type": "screenshot_set.approved",
        "created_at": "2026-11-27T10:00:00Z",
        "data": {
            "screenshot_set": {
                "id": "set_1",
                "screenshots": [
                    {
                        "id": "shot_1",
                        "status": "no_slots_found",
                        "ad": {"id": "ad_1", "status": "uploaded"},
                    }
                ],
            }
        },
    }


def _bytes_sent(port: int) -> tuple[int, int]:
    """The server's count of bytes sent to clients, read over a raw socket so that the
    size of the INFO reply itself is known exactly: (count, reply size)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n")
        reply = b""
        while (
            not reply.endswith(b"\r\n")
            or reply.count(b"\r\n") < 2
            or len(reply) < int(reply[1 : reply.index(b"\r\n")]) + reply.index(b"\r\n") + 4
        ):
            reply += sock.recv(65536)
    count = int(reply.split(b"total_net_output_bytes:")[1].split(b"\r\n")[0])
    return count, len(reply)


def _calls(client: redis.Redis) -> int:
    """Commands run so far, those inside scripts included, INFO excepted."""
    return sum(
        int(value["calls"])
        for name, value in client.info("commandstats").items()
        if name != "cmdstat_info"
    )


def _run(code: str, url: str, *args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "WEBHOOKS_REDIS_URL": url}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        input=stdin,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout


def publish_cost(tenants: int) -> dict[str, float]:
    """Commands and bytes of one publish from a fresh process, among ``tenants`` tenants."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisProcess(Path(tmp), binary=installed_server()) as server,
    ):
        client = redis.Redis.from_url(server.url)
        batch = 2000  # tenants per seeding process, to use both cores
        seeders = [
            subprocess.Popen(
                [sys.executable, "-c", _SEED, str(first), str(min(batch, tenants - first))],
                env={**os.environ, "WEBHOOKS_REDIS_URL": server.url},
            )
            for first in range(0, tenants, batch)
        ]
        for seeder in seeders:
            if seeder.wait(timeout=600):
                raise RuntimeError("seeding failed")
        target = json.dumps([_event(0), f"acct_{tenants // 2:06d}"])
        _run(_PUBLISH, server.url, stdin=target)  # loads the scripts into this Redis
        before_calls = _calls(client)
        before_bytes, info_reply = _bytes_sent(server.port)
        created = int(
            _run(_PUBLISH, server.url, stdin=json.dumps([_event(1), f"acct_{tenants // 2:06d}"]))
        )
        after_bytes, _ = _bytes_sent(server.port)
        after_calls = _calls(client)
        client.close()
    # The first INFO reply was counted after it was read; the second one not at all.
    return {
        "tenants": tenants,
        "deliveries": created,
        "calls": after_calls - before_calls,
        "bytes": after_bytes - before_bytes - info_reply,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tenants")
    parser.add_argument("--many", type=int, default=10_000)
    many = parser.parse_args().many
    for figures in (publish_cost(10), publish_cost(many)):
        print(
            f"{figures['tenants']:>7,} tenants of 2 endpoints: one publish made "
            f"{figures['deliveries']:.0f} deliveries with {figures['calls']:.0f} Redis "
            f"commands and read {figures['bytes']:,.0f} bytes"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
