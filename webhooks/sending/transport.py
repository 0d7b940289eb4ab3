"""The HTTP transport of attempts: pinned to checked addresses, bounded by a deadline.

- :class:`GuardedAdapter` resolves and checks the destination on every request
  (:func:`webhooks.guard.resolve`) and connects to the address it checked, keeping the
  Host header and the TLS SNI and certificate name on the original host name.
- With ``WEBHOOKS_EGRESS_PROXY``, every connection goes to the forward proxy instead,
  which is asked to CONNECT to that same checked address (http:// destinations too, so
  the proxy relays bytes and never reads a signed body); a proxy that fails raises
  :class:`ProxyFailed`, and nothing is tried directly.
- :func:`deadline` bounds a whole attempt. ``requests`` timeouts apply to each
  socket read, so a receiver sending one byte a second keeps an attempt alive
  for ever; a watchdog thread shuts down the sockets of an attempt whose
  deadline passes, which ends any read at once.
"""

from __future__ import annotations

import base64
import functools
import heapq
import ipaddress
import itertools
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, ClassVar

import requests
import requests.utils
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection, _ssl_wrap_socket_and_match_hostname
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import connection as sockets
from urllib3.util.ssltransport import SSLTransport

from ..errors import BlockedDestination
from ..guard import IPNetwork, resolve
from ..settings import EgressProxy

__all__ = ["Alarm", "GuardedAdapter", "ProxyFailed", "deadline"]

#: The most of a proxy's answer to CONNECT that is read: a status line and headers.
_ANSWER_LIMIT = 16_384


class Alarm:
    """One attempt's deadline: when it passes, the attempt's connections are shut down."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.fired = False
        self.cancelled = False
        self._connections: list[HTTPConnection] = []
        self._lock = threading.Lock()

    def watch(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connections.append(connection)
            late = self.fired
        if late:
            self._shut(connection)

    def fire(self) -> None:
        with self._lock:
            if self.cancelled:
                return
            self.fired = True
            connections = list(self._connections)
        for connection in connections:
            self._shut(connection)

    @staticmethod
    def _shut(connection: HTTPConnection) -> None:
        sock = _tcp(connection.sock)
        if sock is None:
            return
        # socket.socket.shutdown, not SSLSocket's: the latter also drops the TLS
        # object under a thread that may be reading from it.
        with suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _tcp(sock: socket.socket | SSLTransport | None) -> socket.socket | None:
    """The socket under ``sock``: TLS with a receiver inside TLS with an https:// egress
    proxy is an SSLTransport over the proxy's SSLSocket."""
    while isinstance(sock, SSLTransport):
        sock = sock.socket
    return sock


class _Watchdog:
    """One thread per process that fires alarms in deadline order."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Alarm]] = []
        self._counter = itertools.count()
        self._wake = threading.Condition()
        self._pid = 0

    def arm(self, alarm: Alarm) -> None:
        with self._wake:
            if self._pid != os.getpid():  # first use in this (possibly forked) process
                self._pid, self._heap = os.getpid(), []
                threading.Thread(target=self._run, name="webhooks-deadline", daemon=True).start()
            heapq.heappush(self._heap, (alarm.at, next(self._counter), alarm))
            # Waking the thread only for a new earliest deadline: attempts share one
            # timeout, so that is rare, and a wake-up per attempt cost a thread switch
            # and a GIL hand-off each (py-spy: the watchdog was in 18 % of samples).
            if self._heap[0][2] is alarm:
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    # An alarm cancelled (its attempt over, as nearly all are by their
                    # deadline) fires nothing: dropped as it comes first, so that the
                    # thread wakes for the next live deadline, not once per attempt.
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        break
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._wake.wait(timeout)
                _, _, alarm = heapq.heappop(self._heap)
            alarm.fire()


_watchdog = _Watchdog()
_current = threading.local()


@contextmanager
def deadline(seconds: float) -> Iterator[Alarm]:
    """Bound everything this thread sends or reads inside the block to ``seconds``."""
    alarm = Alarm(time.monotonic() + seconds)
    _watchdog.arm(alarm)
    _current.alarm = alarm
    try:
        yield alarm
    finally:
        alarm.cancelled = True
        _current.alarm = None


def _watch_current(connection: HTTPConnection) -> None:
    alarm: Alarm | None = getattr(_current, "alarm", None)
    if alarm is not None:
        alarm.watch(connection)


class _WatchedHTTPConnection(HTTPConnection):
    """A connection that the current attempt's alarm can shut."""

    # Watched at every request, not only at connect(): a kept-alive connection is
    # reused by later attempts, each with its own deadline. Watched again after
    # connect(), which may happen inside request(), in case the deadline passed
    # while connecting.
    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch_current(self)
        super().request(*args, **kwargs)

    def connect(self) -> None:
        super().connect()
        _watch_current(self)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """The TLS form of :class:`_WatchedHTTPConnection`."""


class _HTTPPool(HTTPConnectionPool):
    """A pool of watched connections."""

    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    """A pool of watched TLS connections."""

    ConnectionCls = _WatchedHTTPSConnection


class ProxyFailed(OSError):
    """The egress proxy could not be reached, or did not open the tunnel asked for:
    nothing reached the destination. The message names the proxy by its scheme, host
    and port only, never its credentials.

    ``upstream``: the proxy answered CONNECT with a 5XX, its way of saying that it
    tried the destination and could not reach it (refused, timed out, unknown), or took
    the CONNECT and did not answer in time: a failure of the receiver's as much as a
    direct attempt's would be.
    """

    def __init__(self, message: str, upstream: bool = False) -> None:
        super().__init__(message)
        self.upstream = upstream


class _Egress:
    """Opens tunnels through one forward proxy: a connection to the proxy, on which it
    has answered a CONNECT to the pinned address with a 2XX."""

    def __init__(self, proxy: EgressProxy, ca_bundle: str | None = None) -> None:
        self.proxy = proxy
        self._tls: ssl.SSLContext | None = None
        if proxy.scheme == "https":
            # The proxy's certificate is checked like a receiver's, against the same
            # bundle (requests' own, certifi's, by default), by the name in its URL.
            self._tls = ssl.create_default_context(
                cafile=ca_bundle or requests.utils.DEFAULT_CA_BUNDLE_PATH
            )
        self._authorization = b""
        if proxy.username is not None or proxy.password is not None:
            pair = f"{proxy.username or ''}:{proxy.password or ''}".encode()
            self._authorization = b"Proxy-Authorization: Basic " + base64.b64encode(pair) + b"\r\n"

    def open(self, connection: HTTPConnection) -> socket.socket:
        """A socket through the proxy to ``connection``'s host (the checked address) and
        port, made within the connection's (connect) timeout."""
        where = f"the egress proxy {self.proxy.shown}"
        host, port = connection.host, connection.port or connection.default_port
        address = ipaddress.ip_address(host)  # the checked address, never a name
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            # The IPv4 address itself, as a direct connection would reach it: a proxy
            # connecting out over IPv4 alone cannot use the IPv6 spelling.
            address = address.ipv4_mapped
        target = f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"
        try:
            sock = sockets.create_connection(
                (self.proxy.host, self.proxy.port),
                connection.timeout,
                source_address=connection.source_address,
                socket_options=connection.socket_options,
            )
        except TimeoutError as exc:
            raise ProxyFailed(f"{where} did not accept a connection in time") from exc
        except OSError as exc:
            raise ProxyFailed(f"{where} could not be reached: {exc.strerror or exc}") from exc
        if self._tls is not None:
            try:
                sock = self._tls.wrap_socket(sock, server_hostname=self.proxy.host)
            except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
                sock.close()
                raise ProxyFailed(f"TLS with {where} failed: {exc}") from exc
        try:
            sock.sendall(
                f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n".encode("ascii")
                + self._authorization
                + b"\r\n"
            )
            status, reason = self._answer(sock, where, target)
        except ProxyFailed:
            sock.close()
            raise
        except TimeoutError as exc:
            sock.close()
            # A proxy that took the CONNECT is most likely still trying the destination:
            # counted as a direct connect timeout would be.
            raise ProxyFailed(
                f"{where} did not answer CONNECT {target} in time", upstream=True
            ) from exc
        except OSError as exc:
            sock.close()
            raise ProxyFailed(
                f"{where} failed while asked to CONNECT {target}: {exc.strerror or exc}"
            ) from exc
        if 500 <= status < 600:
            sock.close()
            raise ProxyFailed(
                f"{where} could not reach {target}: {status} {reason}".strip(), upstream=True
            )
        if not 200 <= status < 300:
            sock.close()
            raise ProxyFailed(f"{where} refused CONNECT {target}: {status} {reason}".strip())
        return sock

    @staticmethod
    def _answer(sock: socket.socket, where: str, target: str) -> tuple[int, str]:
        """The status and reason of the proxy's answer to CONNECT, whose headers are read
        to their end. Nothing follows them until the client speaks, in TLS and in HTTP
        alike, so reading in blocks takes nothing of the destination's."""
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                raise ProxyFailed(f"{where} closed the connection when asked to CONNECT {target}")
            answer += chunk
            if len(answer) > _ANSWER_LIMIT:
                raise ProxyFailed(f"{where} answered CONNECT {target} with over 16 KB of headers")
        head, _, rest = answer.partition(b"\r\n\r\n")
        version, _, status_reason = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        status, _, reason = status_reason.partition(" ")
        if not version.startswith("HTTP/") or not (status.isdigit() and len(status) == 3):
            raise ProxyFailed(f"{where} answered CONNECT {target} with something not HTTP")
        if rest and 200 <= int(status) < 300:
            raise ProxyFailed(f"{where} sent bytes of its own into the tunnel to {target}")
        return int(status), "".join(char for char in reason[:100] if char.isprintable())


class _TunnelledHTTPConnection(_WatchedHTTPConnection):
    """A watched connection that reaches its (pinned) host through the egress proxy."""

    def __init__(self, *args: Any, egress: _Egress, **kwargs: Any) -> None:
        self.egress = egress
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        # The one place urllib3 opens a socket, for http and for https (which then
        # starts TLS on what this returns, with the destination's SNI and name).
        return self.egress.open(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        # urllib3 writes the headers and the body apart. A proxy relays each write as
        # it comes, and one whose own socket waits for an ACK before a second small
        # segment (Nagle; tinyproxy's does) held every body back until the receiver's
        # delayed ACK: 44 ms an attempt instead of 1. Corked, both leave as one.
        if self.sock is None:
            self.connect()
        with _corked(_tcp(self.sock)):
            super().request(*args, **kwargs)


@contextmanager
def _corked(sock: socket.socket | None) -> Iterator[None]:
    """Hold what is written to ``sock`` inside the block until it ends (Linux's
    TCP_CORK); elsewhere, write as usual."""
    cork = getattr(socket, "TCP_CORK", None)
    if sock is None or cork is None:
        yield
        return
    with suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
    try:
        yield
    finally:
        with suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, cork, 0)


class _TunnelledHTTPSConnection(_TunnelledHTTPConnection, _WatchedHTTPSConnection):
    """The TLS form of :class:`_TunnelledHTTPConnection`: TLS with the destination,
    inside the tunnel."""

    def connect(self) -> None:
        if self.egress.proxy.scheme != "https":
            super().connect()
            return
        # TLS with the destination inside TLS with the proxy: urllib3 nests them only
        # in the tunnels it makes itself, so this connection asks for it by name, with
        # the same checks (the destination's name, this connection's CA bundle).
        self.sock = self._new_conn()
        wrapped = _ssl_wrap_socket_and_match_hostname(
            sock=self.sock,
            cert_reqs=self.cert_reqs,
            ssl_version=self.ssl_version,
            ssl_minimum_version=self.ssl_minimum_version,
            ssl_maximum_version=self.ssl_maximum_version,
            cert_file=self.cert_file,
            key_file=self.key_file,
            key_password=self.key_password,
            ca_certs=self.ca_certs,
            ca_cert_dir=self.ca_cert_dir,
            ca_cert_data=self.ca_cert_data,
            assert_hostname=self.assert_hostname,
            assert_fingerprint=self.assert_fingerprint,
            server_hostname=self.server_hostname,
            ssl_context=self.ssl_context,
            tls_in_tls=True,
        )
        self.sock = wrapped.socket
        self.is_verified = wrapped.is_verified
        _watch_current(self)


class _TunnelledHTTPPool(HTTPConnectionPool):
    """A pool of connections through one egress proxy (``egress``, set per adapter)."""

    ConnectionCls = _TunnelledHTTPConnection
    egress: ClassVar[_Egress]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, egress=self.egress, **kwargs)


class _TunnelledHTTPSPool(HTTPSConnectionPool):
    """The TLS form of :class:`_TunnelledHTTPPool`."""

    ConnectionCls = _TunnelledHTTPSConnection
    egress: ClassVar[_Egress]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, egress=self.egress, **kwargs)


class GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter that connects only to checked addresses, and under a deadline."""

    def __init__(
        self,
        allowed: Sequence[IPNetwork],
        https_only: bool = False,
        pool_maxsize: int = 10,
        egress: EgressProxy | None = None,
        ca_bundle: str | None = None,
    ) -> None:
        self.allowed = tuple(allowed)
        self.https_only = https_only
        self.egress = egress
        self.ca_bundle = ca_bundle
        super().__init__(pool_connections=pool_maxsize, pool_maxsize=pool_maxsize, max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        pools: dict[str, type[HTTPConnectionPool]] = {"http": _HTTPPool, "https": _HTTPSPool}
        if self.egress is not None:
            # Pool classes of this adapter's own, which hand its proxy to each
            # connection: urllib3's pool keys take no field for it.
            tunnel = {"egress": _Egress(self.egress, self.ca_bundle)}
            pools = {
                "http": type("_TunnelledHTTPPool", (_TunnelledHTTPPool,), tunnel),
                "https": type("_TunnelledHTTPSPool", (_TunnelledHTTPSPool,), tunnel),
            }
        self.poolmanager.pool_classes_by_scheme = pools

    def build_connection_pool_key_attributes(
        self,
        request: requests.PreparedRequest,
        verify: bool | str,
        cert: str | tuple[str, str] | None = None,
    ) -> tuple[Any, Any]:
        host_params, typed_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        pool_kwargs: dict[str, Any] = dict(typed_kwargs)
        scheme, host, port = host_params["scheme"], host_params["host"], host_params["port"]
        if self.https_only and scheme != "https":
            raise BlockedDestination(f"{host} over {scheme}: WEBHOOKS_HTTPS_ONLY is set")
        address = resolve(host, port or (443 if scheme == "https" else 80), self.allowed)
        if not isinstance(request.headers, CaseInsensitiveDict):
            request.headers = CaseInsensitiveDict(request.headers or {})
        shown_host = f"[{host}]" if ":" in host else host
        request.headers["Host"] = f"{shown_host}:{port}" if port else shown_host
        if scheme == "https":
            # The certificate and SNI belong to the name, not to the pinned address.
            pool_kwargs["server_hostname"] = host
            pool_kwargs["assert_hostname"] = host
        host_params["host"] = f"[{address}]" if address.version == 6 else str(address)
        return host_params, pool_kwargs

    # Two of requests' steps redone for what this adapter is given, as each cost a
    # few percent of a delivery's CPU (py-spy): no proxies are ever passed (the
    # egress proxy is in the pools), so the URL sent is always the request's path;
    # and no Session holds a cookie jar to fill from the answer.

    def request_url(self, request: requests.PreparedRequest, proxies: Any) -> str:
        if proxies:
            raise ValueError("GuardedAdapter takes no proxies: WEBHOOKS_EGRESS_PROXY is its one")
        return _path_of(request.url or "")

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url or ""
        response.request = req
        response.connection = self  # as requests sets it
        return response


@functools.lru_cache(maxsize=1024)
def _path_of(url: str) -> str:
    """The path and query of ``url``, as requests sends them (PreparedRequest.path_url);
    kept, as a worker posts to the same few URLs over and over."""
    request = requests.PreparedRequest()
    request.url = url
    return request.path_url
