"""A fast asyncio HTTP/1.1 receiver for benchmarks, run as its own process.

Paths: ``/fast/...`` answers 200 at once; ``/slow/...`` after 2 s; ``/blackhole/...``
accepts and never answers. ``GET /_stats`` returns, per path prefix, the count
and the arrival times (time.time()) of the requests, with their webhook-ids.
Keep-alive, Content-Length bodies only: what our sender and requests send.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import socket
import time
from collections import defaultdict
from typing import Any

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


class _State:
    def __init__(self) -> None:
        self.arrivals: dict[str, list[tuple[float, str]]] = defaultdict(list)


async def _handle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: _State
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {
                k.lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            length = int(headers.get("content-length", 0))
            if length:
                await reader.readexactly(length)
            kind = path.strip("/").split("/", 1)[0]
            if method == "GET" and kind in ("_stats", "_count"):
                wanted = path.strip("/").split("/")[1:]
                counts = {k: len(v) for k, v in state.arrivals.items()}
                body = json.dumps(
                    state.arrivals if kind == "_stats" else sum(counts.get(k, 0) for k in wanted)
                ).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
                continue
            state.arrivals[kind].append((time.time(), headers.get("webhook-id", "")))
            if kind == "blackhole":
                await asyncio.sleep(3600)
            if kind == "slow":
                await asyncio.sleep(2)
            writer.write(_OK)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


def _serve(sock: socket.socket) -> None:
    state = _State()

    async def main() -> None:
        server = await asyncio.start_server(
            lambda r, w: _handle(r, w, state), sock=sock, backlog=1024
        )
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class FastReceiver:
    """The receiver in a child process; ``url(path)`` and ``stats()`` from the parent."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.process = multiprocessing.get_context("fork").Process(
            target=_serve, args=(self.sock,), daemon=True
        )

    def __enter__(self) -> FastReceiver:
        self.process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.join(5)
        self.sock.close()

    def url(self, path: str) -> str:
        return self.base + path

    def stats(self) -> dict[str, Any]:
        return dict(self._get("/_stats"))

    def count(self, kind: str) -> int:
        return int(self._get(f"/_count/{kind}"))

    def _get(self, path: str) -> Any:
        import requests

        with requests.Session() as session:
            session.trust_env = False  # loopback: never through a proxy from the environment
            return session.get(self.url(path), timeout=10).json()
