"""How ``webhooks serve`` reads requests: uvicorn's httptools protocol, with bounds on
what a client can make the server hold before any route runs.

uvicorn with httptools bounds none of it itself: a 64 MB header was read whole (the
server's memory grew by 64 MB) and answered 200, and a request whose headers never
finished arriving held its connection for as long as the client liked. Here:

- the request line and headers together are at most ``WEBHOOKS_SERVER_MAX_HEADER_BYTES``
  (431), counted as the bytes arrive, so a header that never ends is refused as soon
  as it passes the limit;
- at most ``WEBHOOKS_SERVER_MAX_HEADERS`` headers (431);
- a request line of at most ``WEBHOOKS_SERVER_MAX_REQUEST_LINE_BYTES`` (414);
- the headers must have arrived ``WEBHOOKS_SERVER_HEADER_TIMEOUT_SECONDS`` after the
  connection opened or the previous answer ended (408, or closed if nothing came);
- the body ``WEBHOOKS_SERVER_BODY_TIMEOUT_SECONDS`` after the headers (408);
- at most ``WEBHOOKS_SERVER_MAX_CONNECTIONS`` connections at once: one more is answered
  503 as soon as it is accepted, and closed.

Bodies are bounded by ``WEBHOOKS_MAX_PAYLOAD_BYTES`` in the application (413), and an
idle keep-alive connection is closed by uvicorn's own timer (``timeout_keep_alive``).
Each refusal is the API's JSON error, and never repeats what the client sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ..settings import Settings
from .app import HEADERS
from .errors import error_response

__all__ = ["BoundedProtocol", "ServerLimits", "bounded_protocol"]

# What a head holds besides its method, target, and headers' names and values: in
# the request line two spaces, the version and a line end; in each header ": " and a
# line end; the blank line that ends it.
_LINE_OVERHEAD = len(b"  HTTP/1.1\r\n")
_HEADER_OVERHEAD = len(b": \r\n")
_END_OVERHEAD = len(b"\r\n")


@dataclass(frozen=True)
class ServerLimits:
    """The bounds one ``webhooks serve`` process reads requests within."""

    header_bytes: int
    headers: int
    request_line_bytes: int
    header_timeout_seconds: float
    body_timeout_seconds: float
    connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(
            header_bytes=settings.server_max_header_bytes,
            headers=settings.server_max_headers,
            request_line_bytes=settings.server_max_request_line_bytes,
            header_timeout_seconds=settings.server_header_timeout_seconds,
            body_timeout_seconds=settings.server_body_timeout_seconds,
            connections=settings.server_max_connections,
        )


class BoundedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing what passes :class:`ServerLimits`.

    A head is measured as sent: the request line and each header's name, value, ``: ``
    and line end. httptools gathers a header inside the parser and hands it over only
    once it is whole, so the bytes of a head are also counted as they arrive, in
    :meth:`data_received`: a header that never ends is refused all the same.
    """

    limits: ClassVar[ServerLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Bytes received since the previous request was whole, while a head is awaited
        # or arriving; None while a body is read. A chunk that also held the end of the
        # previous request is left out, so this never counts more than the head's.
        self._unparsed: int | None = 0
        self._line = 0  # the request line's length, as parsed so far
        self._deadline: asyncio.TimerHandle | None = None
        self._refusal: tuple[int, str, str] | None = None

    # The connection -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.connections:
            # Answered before its request arrives: uvicorn's own limit_concurrency counts
            # only requests whose headers are whole, so it never refuses the
            # connections that hold a server by never finishing theirs.
            self._refuse(
                503,
                "too_many_connections",
                f"the server has WEBHOOKS_SERVER_MAX_CONNECTIONS "
                f"({self.limits.connections:,}) connections open; try again",
            )
            return
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return  # nothing more is read from a refused connection
        if self._unparsed is not None:
            self._unparsed += len(data)
        super().data_received(data)
        if self._unparsed is None:
            # A body is awaited. Armed here rather than when the headers end, so that a
            # request without a body (most) costs no timer.
            if self._deadline is None and self._refusal is None:
                self._arm(self.limits.body_timeout_seconds, self._body_overdue)
        elif self._unparsed > self.limits.header_bytes:
            self._too_large()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # uvicorn arms its keep-alive timer when the connection goes idle (no pipelined
        # request waiting): from then on the next request's head is awaited, or a
        # refusal held back while the answers before it were written is sent.
        if self.timeout_keep_alive_task is not None:
            if self._refusal is not None:
                self._answer_refusal()
            else:
                self._await_head()

    # The parser's callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._line = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._line = len(self.parser.get_method()) + len(self.url) + _LINE_OVERHEAD
        if self._line > self.limits.request_line_bytes:
            self._refuse(
                414,
                "request_line_too_long",
                f"the request line is over WEBHOOKS_SERVER_MAX_REQUEST_LINE_BYTES "
                f"({self.limits.request_line_bytes:,} bytes)",
            )
        elif self._line > self.limits.header_bytes:
            self._too_large()

    def on_headers_complete(self) -> None:
        # Counted here, once per request, rather than in on_header: a call per header
        # cost more than the count (bytes were already bounded as they arrived).
        headers = self.headers
        if self._refusal is None and len(headers) > self.limits.headers:
            self._refuse(
                431,
                "too_many_headers",
                f"the request has more than WEBHOOKS_SERVER_MAX_HEADERS "
                f"({self.limits.headers:,}) headers",
            )
        if self._refusal is None:
            size = self._line + _END_OVERHEAD + _HEADER_OVERHEAD * len(headers)
            if size + sum(len(name) + len(value) for name, value in headers) > (
                self.limits.header_bytes
            ):
                self._too_large()
        if self._refusal is not None:
            return  # the application never sees a refused request
        self._stop_deadline()
        self._unparsed = None
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refusal is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refusal is None:
            self._stop_deadline()
            super().on_message_complete()
            self._unparsed = 0

    # Refusals -----------------------------------------------------------------------

    def _too_large(self) -> None:
        self._refuse(
            431,
            "headers_too_large",
            f"the request line and headers are over WEBHOOKS_SERVER_MAX_HEADER_BYTES "
            f"({self.limits.header_bytes:,} bytes)",
        )

    def _await_head(self) -> None:
        self._arm(self.limits.header_timeout_seconds, self._head_overdue)

    def _arm(self, seconds: float, overdue: Callable[[], None]) -> None:
        self._stop_deadline()
        self._deadline = self.loop.call_later(seconds, overdue)

    def _stop_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_overdue(self) -> None:
        self._deadline = None
        if not self._unparsed:
            # Nothing of a request came: there is no one to answer, as with an idle
            # keep-alive connection.
            self.transport.close()
            return
        self._refuse(
            408,
            "header_timeout",
            f"the request's headers did not arrive within "
            f"WEBHOOKS_SERVER_HEADER_TIMEOUT_SECONDS ({self.limits.header_timeout_seconds:g} s)",
        )

    def _body_overdue(self) -> None:
        self._deadline = None
        self._refusal = (
            408,
            "body_timeout",
            f"the request's body did not arrive within WEBHOOKS_SERVER_BODY_TIMEOUT_SECONDS "
            f"({self.limits.body_timeout_seconds:g} s)",
        )
        if self.cycle.response_started:
            self.transport.close()  # a route that answered without the body: no one to tell
            return
        # The route waits for the rest of the body: marked as uvicorn marks a cycle whose
        # client left, it writes nothing more, and is woken when the connection is lost.
        self.cycle.disconnected = True
        self._answer_refusal()

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Stop reading, and answer ``status`` then close, once the answers to the
        requests before this one are written (pipelined: never interleaved with them)."""
        if self._refusal is not None:
            return  # the first refusal is the one answered
        self._refusal = (status, code, message)
        self._stop_deadline()
        if self.cycle is None or self.cycle.response_complete:
            self._answer_refusal()

    def _answer_refusal(self) -> None:
        assert self._refusal is not None
        if self.transport.is_closing():
            return
        status, code, message = self._refusal
        answer = error_response(status, code, message, headers={"Connection": "close"})
        head = [STATUS_LINE[status]]
        for name, value in [*self.server_state.default_headers, *answer.raw_headers, *HEADERS]:
            head += [name, b": ", value, b"\r\n"]
        self.transport.write(b"".join([*head, b"\r\n", bytes(answer.body)]))
        self.transport.close()


def bounded_protocol(settings: Settings) -> type[BoundedProtocol]:
    """The protocol class to give ``uvicorn.run(http=...)``, bound to ``settings``'
    limits (uvicorn makes one instance per connection, passing only its own config)."""

    class Bound(BoundedProtocol):
        """:class:`BoundedProtocol` with this deployment's limits."""

        limits = ServerLimits.from_settings(settings)

    return Bound
