"""What ``webhooks serve`` reads before any route runs is bounded (issue 23): a real
server process, raw sockets on 127.0.0.1, and the server's memory read from /proc.

The server here has a 3 s header deadline, a 2 s body deadline, a 1 s keep-alive and
8 connections, so that the timers show within seconds; the byte and count limits are
the defaults.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import requests

from webhooks.dev.server import start_server, stop_server
from webhooks.settings import Settings
from webhooks.web.server import ServerLimits, bounded_protocol

DEADLINE, BODY_DEADLINE, KEEP_ALIVE, CONNECTIONS = 3.0, 2.0, 1.0, 8
#: Bytes of a request's head to /healthz besides the padding header's value.
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@dataclass
class Limited:
    """A ``webhooks serve`` process with the limits above."""

    pid: int
    address: tuple[str, int]
    log: Path

    def connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc/<pid>/status")


@pytest.fixture(scope="module")
def limited(
    redis_client: redis.Redis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Limited]:
    log = tmp_path_factory.mktemp("limited") / "serve.log"
    process, base = start_server(
        log,
        {
            "WEBHOOKS_SERVER_HEADER_TIMEOUT_SECONDS": str(DEADLINE),
            "WEBHOOKS_SERVER_BODY_TIMEOUT_SECONDS": str(BODY_DEADLINE),
            "WEBHOOKS_SERVER_KEEP_ALIVE_SECONDS": str(int(KEEP_ALIVE)),
            "WEBHOOKS_SERVER_MAX_CONNECTIONS": str(CONNECTIONS),
        },
    )
    parts = urlsplit(base)
    assert parts.hostname is not None and parts.port is not None
    yield Limited(process.pid, (parts.hostname, parts.port), log)
    stop_server(process)


def read_all(sock: socket.socket, within: float = 5.0) -> bytes:
    """Everything the server sends until it closes; a reset ends it too (the server
    closed with bytes of ours unread)."""
    sock.settimeout(within)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def answers(data: bytes) -> list[tuple[int, bytes]]:
    """The status and body of each answer in ``data`` (bodies with a Content-Length)."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
        length = int(headers[b"content-length"])
        found.append((int(lines[0].split()[1]), rest[:length]))
        data = rest[length:]
    return found


def read_answer(sock: socket.socket) -> int:
    """The status of one answer, read to the end of its body (a head and its body may
    come apart); the connection stays open."""
    sock.settimeout(5)
    data = b""
    while True:
        chunk = sock.recv(65536)
        assert chunk, "closed before the answer was whole"
        data += chunk
        head, ended, body = data.partition(b"\r\n\r\n")
        if ended:
            length = next(
                int(line.split(b":")[1])
                for line in head.lower().split(b"\r\n")
                if line.startswith(b"content-length:")
            )
            if len(body) >= length:
                return int(head.split()[1])


def error_code(body: bytes) -> Any:
    return json.loads(body)["error"]["code"]


def with_head_of(size: int, name: bytes = b"X-Pad") -> bytes:
    """A request to /healthz whose request line and headers take exactly ``size`` bytes."""
    fixed = len(HEALTHZ) + len(name) + len(b": \r\n\r\n")
    return HEALTHZ + name + b": " + b"p" * (size - fixed) + b"\r\n\r\n"


def test_the_defaults() -> None:
    settings = Settings()
    limits = ServerLimits.from_settings(settings)
    assert limits == ServerLimits(
        header_bytes=16_384,
        headers=100,
        request_line_bytes=8192,
        header_timeout_seconds=10,
        body_timeout_seconds=30,
        connections=1000,
    )
    assert settings.server_keep_alive_seconds == 5
    assert bounded_protocol(settings).limits == limits


@pytest.mark.slow
def test_a_64_mb_header_is_refused_as_it_arrives(limited: Limited) -> None:
    before = limited.rss_kb()
    sent = 0
    with limited.connect() as sock:
        sock.sendall(HEALTHZ + b"X-Big: ")
        chunk = b"a" * 65536
        try:
            while sent < 64 << 20:
                sock.sendall(chunk)
                sent += len(chunk)
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server closed: stop sending
        assert sent < 64 << 20, "the server read the whole 64 MB header"
        answer = read_all(sock)
    grown = limited.rss_kb() - before
    if answer:  # or the reset came first
        [(status, body)] = answers(answer)
        assert (status, error_code(body)) == (431, "headers_too_large")
    assert grown < 20 * 1024, f"the server's RSS grew by {grown} KB"
    assert requests.get(f"http://{limited.address[0]}:{limited.address[1]}/healthz", timeout=10).ok


@pytest.mark.slow
def test_headers_that_trickle_in_are_cut_off_at_the_deadline(limited: Limited) -> None:
    """A byte a second, on a new connection and on one that was answered before; and
    a connection that sends nothing."""
    fresh, reused, silent = limited.connect(), limited.connect(), limited.connect()
    reused.sendall(HEALTHZ + b"\r\n")
    assert read_answer(reused) == 200
    started = time.monotonic()
    trickled = {
        fresh: HEALTHZ + b"X-Slow: " + b"s" * 100,
        reused: HEALTHZ + b"X-Slow: " + b"s" * 100,
    }
    closed: dict[socket.socket, float] = {}
    received = {fresh: b"", reused: b"", silent: b""}
    while len(closed) < 3 and time.monotonic() - started < DEADLINE + 5:
        for sock, rest in trickled.items():
            if sock not in closed and rest:
                with contextlib.suppress(OSError):  # closed, and not yet seen so
                    sock.sendall(rest[:1])
                trickled[sock] = rest[1:]
        second_later = time.monotonic() + 1
        while len(closed) < 3 and (left := second_later - time.monotonic()) > 0:
            readable, _, _ = select.select([s for s in received if s not in closed], [], [], left)
            for sock in readable:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                received[sock] += chunk
                if not chunk:
                    closed[sock] = time.monotonic() - started
    for sock in received:
        sock.close()
    assert set(closed) == {fresh, reused, silent}, "a connection outlived the deadline"
    assert all(DEADLINE - 0.5 < after < DEADLINE + 2 for after in closed.values()), closed
    for sock in (fresh, reused):
        [(status, body)] = answers(received[sock])
        assert (status, error_code(body)) == (408, "header_timeout")
    assert received[silent] == b""  # nothing asked, nothing answered


@pytest.mark.slow
def test_a_body_that_trickles_in_is_cut_off_at_its_deadline(limited: Limited) -> None:
    body = json.dumps({"token": "t" * 100}).encode()
    with limited.connect() as sock:
        sock.sendall(
            b"POST /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        started = time.monotonic()
        sock.settimeout(0.5)
        received = b""
        for byte in body:  # two bytes a second; the server stops reading at its deadline
            with contextlib.suppress(OSError):
                sock.sendall(bytes([byte]))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if time.monotonic() - started > BODY_DEADLINE + 3:
                    break
                continue
            except ConnectionResetError:
                chunk = b""
            received += chunk
            if not chunk or received.endswith(b"}}"):
                break
        ended = time.monotonic() - started
    [(status, answer)] = answers(received)
    assert (status, error_code(answer)) == (408, "body_timeout")
    assert BODY_DEADLINE - 0.5 < ended < BODY_DEADLINE + 2, ended
    # the route that waited for the body was told the client left, and logged nothing
    assert "Exception" not in limited.log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        pytest.param(HEALTHZ + b"X-N: 1\r\n" * 99 + b"\r\n", 200, None, id="100 headers"),
        pytest.param(HEALTHZ + b"X-N: 1\r\n" * 100 + b"\r\n", 431, "too_many_headers", id="101"),
        pytest.param(with_head_of(16_384), 200, None, id="a 16 KB head"),
        pytest.param(with_head_of(16_385), 431, "headers_too_large", id="a byte more"),
        pytest.param(
            # the request line: GET, a space, the target, a space, HTTP/1.1, CRLF
            b"GET /" + b"u" * (8192 - 16) + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            404,
            None,
            id="an 8 KB request line",
        ),
        pytest.param(
            b"GET /" + b"u" * (8192 - 15) + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            414,
            "request_line_too_long",
            id="a byte more",
        ),
    ],
)
def test_header_count_and_size(
    limited: Limited, request_bytes: bytes, status: int, code: str | None
) -> None:
    with limited.connect() as sock:
        sock.sendall(request_bytes)
        if code is None:
            assert read_answer(sock) == status
            return
        [(answered, body)] = answers(read_all(sock))
    assert (answered, error_code(body)) == (status, code)


@pytest.mark.slow
def test_a_header_that_never_ends_is_refused_once_past_the_limit(limited: Limited) -> None:
    with limited.connect() as sock:
        sock.sendall(HEALTHZ + b"X-Endless: ")
        for _ in range(17):  # 17 KB, a KB at a time, and never a line end
            sock.sendall(b"e" * 1024)
            time.sleep(0.01)
        [(status, body)] = answers(read_all(sock))
    assert (status, error_code(body)) == (431, "headers_too_large")


@pytest.mark.slow
def test_pipelined_requests_are_answered_before_a_refusal(limited: Limited) -> None:
    with limited.connect() as sock:
        sock.sendall(HEALTHZ + b"\r\n" + HEALTHZ + b"\r\n" + with_head_of(16_385))
        found = answers(read_all(sock))
    assert [status for status, _ in found] == [200, 200, 431]
    assert error_code(found[2][1]) == "headers_too_large"


@pytest.mark.slow
def test_connections_past_the_limit_are_refused_at_once(limited: Limited) -> None:
    held = [limited.connect() for _ in range(CONNECTIONS)]
    try:
        with limited.connect() as one_more:
            started = time.monotonic()
            [(status, body)] = answers(read_all(one_more))
            assert time.monotonic() - started < 1, "refused only at the header deadline"
        assert (status, error_code(body)) == (503, "too_many_connections")
        for sock in held:  # each of the first ones is served
            sock.sendall(HEALTHZ + b"\r\n")
            assert read_answer(sock) == 200
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 2
    while True:  # once they are gone, a new one is served
        with limited.connect() as sock:
            sock.sendall(HEALTHZ + b"\r\n")
            if read_answer(sock) == 200:
                break
        assert time.monotonic() < deadline, "the closed connections were never counted out"


@pytest.mark.slow
def test_an_idle_keep_alive_connection_is_closed(limited: Limited) -> None:
    with limited.connect() as sock:
        sock.sendall(HEALTHZ + b"\r\n")
        assert read_answer(sock) == 200
        answered = time.monotonic()
        rest = read_all(sock)
        idle = time.monotonic() - answered
    assert rest == b""
    # uvicorn's keep-alive timer, well before the header deadline
    assert KEEP_ALIVE - 0.3 < idle < DEADLINE - 0.5, idle
