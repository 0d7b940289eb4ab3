"""A real HTTP receiver on 127.0.0.1 whose misbehaviour is chosen by the request path:
for the demo, the tests and the benchmarks.

Paths (``<k>`` and ``<s>`` are numbers):
  /ok                 200
  /status/<code>      that status, every time
  /fail/<k>           500 for the first k requests of each webhook-id, then 200
  /redirect           302 to /redirect-target (which must never be requested)
  /huge               200 with a 5 MB body
  /sleep-once/<s>     sleeps s seconds before answering the first request of a webhook-id
  /reset-once         first request of a webhook-id: half a status line, then a TCP reset
  /drip               200, then a body of one byte every 0.2 s for 60 s
  /gone-once          410 to the first request of a webhook-id, then 200
  /redirect-private   302 to http://10.0.0.5/ (which must never be contacted)
  /huge50             200 with a 50 MB body, written a megabyte at a time
  /drip-once          first request of a webhook-id: the whole answer, one byte a second
  /slow-headers-once  first request of a webhook-id: the status line, then a header byte a second
  /retry-after/<s>    503 with Retry-After: s to the first request of a webhook-id, then 200
  /too-many/<s>       the same with 429
  /flaky/<p>          500 with probability p percent, else 200 (seeded per receiver)
  /sleep/<s>          sleeps s seconds, then 200, every time
  /switch             500 until the test sets ``receiver.switch_ok = True``, then 200
  /hang               no answer until the test sets ``receiver.switch_ok = True`` (at
                      most 60 s), then 200: a blackhole that can recover
  /hostile            500 with a body of HTML markup that runs script if a page injects it
  /fail-listed        500 to the webhook-ids in ``receiver.failing`` (the test fills it), else 200
  /limit/<n>          200 to at most n requests in any one second (per path), 429 to the
                      rest: a receiver with a rate limit of its own
Anything after the recognised part of a path (/ok/a, /ok/b) only tells endpoints apart.
"""

from __future__ import annotations

import random
import socket
import struct
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: What /hostile answers: markup that sets ``window.__xss`` if any page renders it as HTML.
HOSTILE_BODY = (
    b'<script>window.__xss = "script"</script>'
    b"<img src=x onerror=\"window.__xss = 'img'\">"
    b"<svg onload=\"window.__xss = 'svg'\"></svg>"
)


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    #: The address the request came from: the egress proxy's when there is one.
    peer: str = ""


class _Server(ThreadingHTTPServer):
    """Threads per request, daemonic, quiet about senders that hang up."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # The sender hanging up on a huge or dripping answer is what the tests want.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class Receiver:
    """Owns the server thread, every request received and every answer sent."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.per_id: Counter[tuple[str, str]] = Counter()
        self.answers: list[tuple[str, str, int]] = []  # (path, webhook-id, status sent)
        self.random = random.Random(1234)
        self.switch_ok = False
        self.failing: set[str] = set()
        self.inflight = 0
        self.max_inflight = 0
        self.let_in: dict[str, deque[float]] = {}  # /limit: when each 200 of a path went
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            """Records each POST, then answers as its path says."""

            protocol_version = "HTTP/1.1"
            # The status line and headers go in one write and the body in another:
            # with Nagle's algorithm the body waited for the sender's delayed ACK, 40 ms
            # a request on a kept-alive connection.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                webhook_id = self.headers.get("webhook-id", "")
                with receiver.lock:
                    receiver.requests.append(
                        Received(
                            self.path,
                            dict(self.headers.items()),
                            body,
                            time.time(),
                            str(self.client_address[0]),
                        )
                    )
                    receiver.per_id[(self.path, webhook_id)] += 1
                    count = receiver.per_id[(self.path, webhook_id)]
                    receiver.inflight += 1
                    receiver.max_inflight = max(receiver.max_inflight, receiver.inflight)
                try:
                    receiver.respond(self, count)
                finally:
                    with receiver.lock:
                        receiver.inflight -= 1

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return self.base + path

    def received(self, path: str | None = None, webhook_id: str | None = None) -> list[Received]:
        with self.lock:
            return [
                r
                for r in self.requests
                if (path is None or r.path == path)
                and (webhook_id is None or r.headers.get("webhook-id") == webhook_id)
            ]

    def _answer(
        self,
        handler: BaseHTTPRequestHandler,
        code: int,
        body: bytes = b"ok",
        headers: dict[str, str] | None = None,
    ) -> None:
        with self.lock:
            self.answers.append((handler.path, handler.headers.get("webhook-id", ""), code))
        handler.send_response(code)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def _within(self, path: str, limit: int) -> bool:
        """Whether a request to ``path`` now keeps it within ``limit`` answered a second."""
        moment = time.monotonic()
        with self.lock:
            window = self.let_in.setdefault(path, deque())
            while window and window[0] <= moment - 1.0:
                window.popleft()
            if len(window) >= limit:
                return False
            window.append(moment)
            return True

    def respond(self, handler: BaseHTTPRequestHandler, count: int) -> None:
        parts = handler.path.strip("/").split("/")
        kind, arg = parts[0], (parts[1] if len(parts) > 1 else "")
        if kind == "ok":
            self._answer(handler, 200, b'{"ok": true}')
        elif kind == "status":
            self._answer(handler, int(arg), f"status {arg}".encode())
        elif kind == "fail":
            self._answer(handler, 500 if count <= int(arg) else 200)
        elif kind == "redirect":
            self._answer(handler, 302, b"moved", {"Location": self.url("/redirect-target")})
        elif kind == "huge":
            self._answer(handler, 200, b"x" * (5 * 1024 * 1024))
        elif kind == "sleep-once":
            if count == 1:
                time.sleep(float(arg))
            self._answer(handler, 200)
        elif kind == "reset-once" and count == 1:
            handler.wfile.write(b"HTTP/1.1 200 O")
            handler.wfile.flush()
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            handler.connection.close()
            handler.close_connection = True
        elif kind == "redirect-private":
            self._answer(handler, 302, b"moved", {"Location": "http://10.0.0.5/"})
        elif kind == "huge50":
            handler.send_response(200)
            handler.send_header("Content-Length", str(50 * 1024 * 1024))
            handler.end_headers()
            chunk = b"y" * (1024 * 1024)
            for _ in range(50):
                handler.wfile.write(chunk)
        elif kind in ("drip-once", "slow-headers-once") and count == 1:
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            start = 0 if kind == "drip-once" else answer.index(b"\r\n") + 2
            handler.wfile.write(answer[:start])
            handler.wfile.flush()
            for byte in answer[start:]:
                time.sleep(1)
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
        elif kind == "sleep":
            time.sleep(float(arg))
            self._answer(handler, 200)
        elif kind == "limit":
            self._answer(handler, 200 if self._within(handler.path, int(arg)) else 429)
        elif kind == "switch":
            self._answer(handler, 200 if self.switch_ok else 500)
        elif kind == "hang":
            deadline = time.monotonic() + 60
            while not self.switch_ok and time.monotonic() < deadline:
                time.sleep(0.05)
            self._answer(handler, 200)
        elif kind == "hostile":
            self._answer(handler, 500, HOSTILE_BODY, {"Content-Type": "text/html"})
        elif kind == "flaky":
            with self.lock:
                failing = self.random.random() * 100 < float(arg)
            self._answer(handler, 500 if failing else 200)
        elif kind == "fail-listed":
            with self.lock:
                failing = handler.headers.get("webhook-id", "") in self.failing
            self._answer(handler, 500 if failing else 200)
        elif kind == "gone-once":
            self._answer(handler, 410 if count == 1 else 200)
        elif kind in ("retry-after", "too-many") and count == 1:
            code = 503 if kind == "retry-after" else 429
            self._answer(handler, code, b"later", {"Retry-After": arg})
        elif kind == "drip":
            handler.send_response(200)
            handler.send_header("Content-Length", "300")
            handler.end_headers()
            try:
                for _ in range(300):
                    handler.wfile.write(b"x")
                    handler.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass  # the sender gave up, as it should
        else:
            self._answer(handler, 200)
