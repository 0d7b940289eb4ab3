"""What ``webhooks serve``'s read limits hold, and what they cost (issue 23).

    python -m bench.server [--unbounded]

- Three 64 MB headers streamed at a real ``webhooks serve`` (on a Redis server of its
  own): the server's RSS before and after, and how much was sent before it closed.
- 400 connections sending their headers a byte a second: when the server closed them
  (the default 10 s deadline), or how many it still held after 30 s.
- The server CPU per request of the bounded protocol against uvicorn's own httptools
  protocol, with a trivial ASGI app and one keep-alive client sending a request of 10
  headers, turn and turn about (9 turns of 30,000 requests each); CPU time rather than
  wall time, as the machine is shared.

``--unbounded`` runs the first two against the same application on uvicorn's own
httptools protocol (what ``webhooks serve`` ran before), for the figures to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from webhooks.dev.redis_server import RedisProcess, installed_server
from webhooks.dev.server import free_port, start_server, stop_server

TOKEN = "bench-operator-token-000000000000"
SECRET = "bench-portal-secret-0000000000000000000"
HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
REQUEST = (
    b"GET /api/v1/tenants/acct_1/deliveries?limit=50 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"User-Agent: bench\r\nAccept: */*\r\nAccept-Encoding: gzip\r\nAccept-Language: en\r\n"
    b"Authorization: Bearer 0123456789abcdef0123456789abcdef\r\nCookie: a=b\r\n"
    b"X-CSRF-Token: 0123456789abcdef\r\nOrigin: http://127.0.0.1\r\n\r\n"
)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def big_headers(pid: int, port: int) -> str:
    before = _rss_mb(pid)
    sent = []
    held = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(HEAD + b"X-Big: ")
        count = 0
        try:
            while count < 64 << 20:
                sock.sendall(b"a" * 65536)
                count += 65536
        except OSError:
            pass  # the server closed
        sent.append(count >> 20)
        held.append(sock)
    time.sleep(0.5)
    after = _rss_mb(pid)
    for sock in held:
        sock.close()
    return (
        f"three 64 MB headers: RSS {before:.0f} MB before, {after:.0f} MB after; "
        f"sent before the server closed: {sent} MB"
    )


def slow_headers(port: int, count: int = 400, within: float = 30) -> str:
    connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    slow = HEAD + b"X-Slow: " + b"s" * 100
    started = time.monotonic()
    waiting, closed = set(connections), []
    sent = 0
    while waiting and time.monotonic() - started < within:
        for sock in waiting:
            with contextlib.suppress(OSError):  # closed, and not yet seen so
                sock.sendall(slow[sent : sent + 1])
        sent += 1
        second_later = time.monotonic() + 1
        while waiting and (left := second_later - time.monotonic()) > 0:
            readable, _, _ = select.select(list(waiting), [], [], left)
            for sock in readable:
                waiting.discard(sock)
                closed.append(time.monotonic() - started)
                sock.close()
    for sock in waiting:
        sock.close()
    if not closed:
        return f"{count} connections at a byte a second: none closed in {within:.0f} s"
    return (
        f"{count} connections at a byte a second: {len(closed)} closed, the first at "
        f"{min(closed):.1f} s, the last at {max(closed):.1f} s; {len(waiting)} still "
        f"open after {within:.0f} s"
    )


def _serve(port: int, protocol: str, app_kind: str) -> None:
    """``webhooks serve``'s application, or a trivial one (what the protocol costs and
    nothing else), on ``protocol``."""
    import uvicorn

    from webhooks.settings import Settings
    from webhooks.web.app import create_app
    from webhooks.web.server import bounded_protocol

    async def trivial(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    uvicorn.run(
        create_app() if app_kind == "webhooks" else trivial,
        port=port,
        http=bounded_protocol(Settings()) if protocol == "bounded" else "httptools",
        log_level="error",
        access_log=False,
        lifespan="off",
    )


def _started(
    protocol: str, app_kind: str, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.server",
            "--serve",
            protocol,
            "--app",
            app_kind,
            "--port",
            str(port),
        ],
        env={**os.environ, **env},
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return server, port
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.05)


def _cpu_per_request(protocol: str, count: int) -> float:
    server, port = _started(protocol, "trivial", {})
    try:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(500):  # warm up
            sock.sendall(REQUEST)
            sock.recv(4096)
        before = _cpu_seconds(server.pid)
        for _ in range(count):
            sock.sendall(REQUEST)
            sock.recv(4096)
        spent = _cpu_seconds(server.pid) - before
        sock.close()
        return spent / count * 1e6
    finally:
        server.terminate()
        server.wait()


def per_request(turns: int = 9, count: int = 30_000) -> list[str]:
    spent: dict[str, list[float]] = {"httptools": [], "bounded": []}
    for _ in range(turns):
        for protocol, values in spent.items():
            values.append(_cpu_per_request(protocol, count))
    return [
        f"{protocol:<9} server CPU per request: min {min(values):5.1f} us, median "
        f"{statistics.median(values):5.1f} us ({turns} turns of {count:,})"
        for protocol, values in spent.items()
    ]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.server")
    parser.add_argument("--unbounded", action="store_true")
    parser.add_argument("--serve", choices=["httptools", "bounded"], help=argparse.SUPPRESS)
    parser.add_argument("--app", choices=["trivial", "webhooks"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.port, args.serve, args.app)
        return 0
    lines = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        RedisProcess(Path(tmp), binary=installed_server()) as redis_server,
    ):
        env = {
            "WEBHOOKS_REDIS_URL": redis_server.url,
            "WEBHOOKS_API_TOKEN": TOKEN,
            "WEBHOOKS_PORTAL_SECRET": SECRET,
        }
        if args.unbounded:
            process, port = _started("httptools", "webhooks", env)
        else:
            process, base = start_server(Path(tmp) / "serve.log", env)
            port = int(base.rsplit(":", 1)[1])
        try:
            lines += [big_headers(process.pid, port), slow_headers(port)]
        finally:
            stop_server(process)
    if not args.unbounded:
        lines += per_request()
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
