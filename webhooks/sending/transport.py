"""The HTTP transport of attempts: pinned to checked addresses, bounded by a deadline.

- :class:`GuardedAdapter` resolves and checks the destination on every request
  (:func:`webhooks.guard.resolve`) and connects to the address it checked, keeping the
  Host header and the TLS SNI and certificate name on the original host name.
- :func:`deadline` bounds a whole attempt. ``requests`` timeouts apply to each
  socket read, so a receiver sending one byte a second keeps an attempt alive
  for ever; a watchdog thread shuts down the sockets of an attempt whose
  deadline passes, which ends any read at once.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..errors import BlockedDestination
from ..guard import IPNetwork, resolve

__all__ = ["Alarm", "GuardedAdapter", "deadline"]


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
        sock = connection.sock
        if sock is None:
            return
        # socket.socket.shutdown, not SSLSocket's: the latter also drops the TLS
        # object under a thread that may be reading from it.
        with suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


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
                while not self._heap or self._heap[0][0] > time.monotonic():
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


class GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter that connects only to checked addresses, and under a deadline."""

    def __init__(
        self, allowed: Sequence[IPNetwork], https_only: bool = False, pool_maxsize: int = 10
    ) -> None:
        self.allowed = tuple(allowed)
        self.https_only = https_only
        super().__init__(pool_connections=pool_maxsize, pool_maxsize=pool_maxsize, max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

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
        headers = CaseInsensitiveDict(request.headers or {})
        shown_host = f"[{host}]" if ":" in host else host
        headers["Host"] = f"{shown_host}:{port}" if port else shown_host
        request.headers = headers
        if scheme == "https":
            # The certificate and SNI belong to the name, not to the pinned address.
            pool_kwargs["server_hostname"] = host
            pool_kwargs["assert_hostname"] = host
        host_params["host"] = f"[{address}]" if address.version == 6 else str(address)
        return host_params, pool_kwargs
