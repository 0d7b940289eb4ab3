"""One HTTP attempt: POST the body with its webhook headers, read a bounded answer,
classify what happened. Nothing here raises: every failure is an :class:`Outcome`."""

from __future__ import annotations

import functools
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from http.client import RemoteDisconnected

import requests
import urllib3.exceptions

from .._version import __version__
from ..clock import now
from ..errors import BlockedDestination
from ..models import RESPONSE_BODY_LIMIT, Attempt, AttemptError, ErrorKind
from ..settings import Settings
from ..signing import signature_header
from .transport import GuardedAdapter, ProxyFailed, deadline

__all__ = [
    "TEST_HEADERS",
    "USER_AGENT",
    "Outcome",
    "Sender",
    "classify",
    "parse_retry_after",
    "webhook_headers",
]

USER_AGENT = f"webhooks/{__version__}"
#: What a test event's attempts carry besides: a receiver may tell a test from a real
#: event without parsing it.
TEST_HEADERS = {"webhook-test": "true"}


def webhook_headers(delivery_id: str, timestamp: str) -> dict[str, str]:
    """The headers of ours every attempt carries but the signature: what
    :meth:`Sender.attempt` sends, and what a delivery's page says was sent."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": delivery_id,
        "webhook-timestamp": timestamp,
    }


_MESSAGE_LIMIT = 300

#: What every attempt carries besides (an endpoint's own headers may override them):
#: requests' defaults, but for the encoding, as the receiver's bytes are kept as sent.
_DEFAULT_HEADERS = {"Accept": "*/*", "Connection": "keep-alive", "Accept-Encoding": "identity"}


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps: requests and urllib3 nest them deeply."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            *current.args,
        ]
        stack.extend(item for item in nested if isinstance(item, BaseException))


def classify(exc: BaseException, deadline_passed: bool = False) -> AttemptError:
    """Name the failure with a short kind, most specific cause first."""
    chain = list(_causes(exc))

    def has(*types: type[BaseException]) -> bool:
        return any(isinstance(item, types) for item in chain)

    if has(BlockedDestination):
        message = str(next(item for item in chain if isinstance(item, BlockedDestination)))
        return AttemptError(kind=ErrorKind.BLOCKED_DESTINATION, message=message[:_MESSAGE_LIMIT])
    if has(ProxyFailed):
        # Its own message only: it names the proxy without its credentials, and says
        # all that is known (a timeout talking to the proxy included).
        message = str(next(item for item in chain if isinstance(item, ProxyFailed)))
        return AttemptError(kind=ErrorKind.PROXY_ERROR, message=message[:_MESSAGE_LIMIT])
    if has(requests.exceptions.InvalidHeader, UnicodeEncodeError):
        # Their messages quote the header's value, which is often the receiver's
        # credential: an endpoint's headers are never shown again, not even here.
        return AttemptError(
            kind=ErrorKind.REQUEST_ERROR,
            message="a header of the endpoint has a value HTTP cannot send "
            "(visible Latin-1 on one line, no spaces at either end); the value is not shown",
        )
    # Order matters: urllib3 makes NewConnectionError (refused, DNS) a subclass
    # of ConnectTimeoutError, so the timeout check comes after the specific causes.
    if has(urllib3.exceptions.NameResolutionError, socket.gaierror):
        kind = ErrorKind.DNS
    elif has(ConnectionRefusedError):
        kind = ErrorKind.CONNECT_REFUSED
    elif has(requests.exceptions.SSLError, ssl.SSLError, urllib3.exceptions.SSLError):
        kind = ErrorKind.TLS
    elif has(requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError):
        kind = ErrorKind.TIMEOUT
    elif has(
        ConnectionResetError,
        RemoteDisconnected,
        BrokenPipeError,
        urllib3.exceptions.ProtocolError,
        requests.exceptions.ChunkedEncodingError,
    ):
        kind = ErrorKind.CONNECTION_RESET
    elif has(requests.ConnectionError, OSError):
        kind = ErrorKind.CONNECTION_ERROR
    else:
        kind = ErrorKind.REQUEST_ERROR
    message = f"{type(exc).__name__}: {exc}"
    if deadline_passed and kind not in (
        ErrorKind.TIMEOUT,
        ErrorKind.DNS,
        ErrorKind.CONNECT_REFUSED,
    ):
        # The watchdog shut the sockets: whatever broke next broke because of it.
        kind, message = ErrorKind.TIMEOUT, f"deadline passed, connection closed ({message})"
    return AttemptError(kind=kind, message=message[:_MESSAGE_LIMIT])


@dataclass(frozen=True)
class Outcome:
    """How one attempt went, and whether the receiver asked for a longer wait.

    ``about_receiver`` is False for a failure of ours that says nothing of the receiver:
    the egress proxy could not be reached, or refused the tunnel (but not a proxy that
    tried the receiver and could not reach it). Such an attempt leaves the endpoint's
    failure clock alone.
    """

    attempt: Attempt
    retry_after: float | None = None  # seconds the receiver asked us to wait (429 and 503)
    about_receiver: bool = True


def parse_retry_after(value: str | None, at: datetime) -> float | None:
    """Seconds from ``at`` that a Retry-After header asks for: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - at).total_seconds())


def _read_prefix(response: requests.Response, deadline: float) -> bytes:
    """Up to RESPONSE_BODY_LIMIT bytes of the answer, never past the deadline."""
    prefix = b""
    try:
        # read1 returns what has arrived instead of waiting for a full buffer; the
        # raw bytes (we ask for identity encoding) so a compressed answer cannot
        # inflate past the limit.
        while len(prefix) < RESPONSE_BODY_LIMIT and time.monotonic() < deadline:
            chunk = response.raw.read1(RESPONSE_BODY_LIMIT - len(prefix), decode_content=False)
            if not chunk:
                break
            prefix += chunk
            if response.raw.length_remaining == 0:
                break  # its Content-Length is read: no call more to find the end
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        # The status line already decided the outcome; a body cut short is
        # kept as far as it came.
        pass
    return prefix[:RESPONSE_BODY_LIMIT]


@functools.lru_cache(maxsize=1024)
def _prepared_url(url: str) -> str:
    """``url`` as requests sends it (PreparedRequest.prepare_url: IDNA, quoting), kept:
    a worker posts to the same few URLs over and over, and preparing one took a twentieth
    of an attempt's CPU. An invalid URL raises each time, as nothing is kept of it."""
    request = requests.PreparedRequest()
    request.prepare_url(url, None)
    return request.url or url


class Sender:
    """Makes the attempts of one deployment, under its settings: the deadlines, the
    networks its guard allows, https only or not, the CA bundle, the egress proxy."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._local = threading.local()

    def _adapter(self) -> GuardedAdapter:
        # One adapter per thread: its pools keep connections to a receiver alive
        # between attempts. No Session around it: its cookie jar would send a cookie
        # one receiver set back with every later attempt to that host, whatever
        # tenant's; proxies and .netrc from the worker's environment have no business
        # in deliveries; and its merging and hooks cost a tenth of an attempt. The one
        # proxy deliveries take is WEBHOOKS_EGRESS_PROXY, in the adapter, which
        # tunnels to the address the guard checked.
        adapter: GuardedAdapter | None = getattr(self._local, "adapter", None)
        if adapter is None:
            settings = self._settings
            adapter = GuardedAdapter(
                settings.allowed_networks,
                https_only=settings.https_only,
                egress=settings.egress,
                ca_bundle=settings.ca_bundle,
            )
            self._local.adapter = adapter
        return adapter

    def attempt(
        self,
        delivery_id: str,
        number: int,
        url: str,
        body: bytes,
        secrets: Sequence[str],
        extra: Mapping[str, str] | None = None,
    ) -> Outcome:
        """Attempt ``number`` of a delivery: the endpoint's own ``extra`` headers, then
        the Standard Webhooks ones, signed afresh by every secret given (none for a bare
        URL)."""
        timestamp = int(time.time())
        headers = {**(extra or {}), **webhook_headers(delivery_id, str(timestamp))}
        if secrets:
            headers["webhook-signature"] = signature_header(delivery_id, timestamp, body, secrets)
        return self.post(number, url, body, headers)

    def post(self, number: int, url: str, body: bytes, headers: Mapping[str, str]) -> Outcome:
        """POST ``body`` to ``url`` once, within the settings' deadlines; any 2XX
        succeeds, anything else is a failed attempt."""
        connect_timeout = self._settings.connect_timeout_seconds
        total_timeout = self._settings.timeout_seconds
        started_at = now()
        start = time.monotonic()
        status_code: int | None = None
        error: AttemptError | None = None
        prefix = b""
        retry_after = None
        about_receiver = True
        with deadline(total_timeout) as alarm:
            try:
                adapter = self._adapter()
                # What PreparedRequest.prepare does but for cookies, authentication
                # (the URL holds no credentials: guard.check_url) and hooks.
                request = requests.PreparedRequest()
                request.prepare_method("POST")
                request.url = _prepared_url(url)
                request.prepare_headers({**_DEFAULT_HEADERS, **headers})
                request.prepare_body(body, None)
                # A 3XX is a failed attempt, never followed: the adapter follows none.
                response = adapter.send(
                    request,
                    stream=True,
                    timeout=(min(connect_timeout, total_timeout), total_timeout),
                    verify=self._settings.ca_bundle or True,
                )
                if alarm.fired:
                    # The watchdog cut the headers short; http.client takes the early
                    # end for the end of the headers, so the status line proves nothing.
                    response.close()
                    raise requests.Timeout("deadline passed before the response headers ended")
                with response:
                    status_code = response.status_code
                    prefix = _read_prefix(response, start + total_timeout)
                if status_code in (429, 503):
                    retry_after = parse_retry_after(response.headers.get("Retry-After"), now())
                if not 200 <= status_code < 300:
                    reason = f"HTTP {status_code} {response.reason or ''}".strip()
                    error = AttemptError(
                        kind=ErrorKind.HTTP_STATUS, message=reason[:_MESSAGE_LIMIT]
                    )
            except (
                requests.RequestException,
                urllib3.exceptions.HTTPError,
                OSError,
                ValueError,
                BlockedDestination,
            ) as exc:
                error = classify(exc, deadline_passed=alarm.fired)
                about_receiver = not any(
                    isinstance(cause, ProxyFailed) and not cause.upstream for cause in _causes(exc)
                )
        attempt = Attempt(
            number=number,
            started_at=started_at,
            duration_ms=round((time.monotonic() - start) * 1000, 1),
            status_code=status_code,
            error=error,
            response_body=prefix.decode("utf-8", errors="replace"),
        )
        return Outcome(attempt, retry_after, about_receiver)
