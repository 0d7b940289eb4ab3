"""A TCP proxy on 127.0.0.1 in front of a Redis, which cuts or stalls a chosen command.

Arm it with the bytes of a command (say the SHA of a script, which EVALSHA
carries): when a client sends them, ``on_command`` runs before they are
forwarded, and with ``cut=True`` the reply is swallowed and the connection reset,
so the client never learns whether the command ran. New connections are then
refused for ``refuse_for`` seconds, so that the client's own retries fail too.
With ``stall=True`` the server's answers from then on are held, the connection
open, until :meth:`Proxy.release`: a server that has gone silent (used for
RabbitMQ too, whose confirms then never come).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # Shut down first: close() alone waits for the other thread's recv() on the
        # same socket to return, and the peer, waiting for an answer, never learns.
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class Proxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self.marker: bytes | None = None
        self.cut = False
        self.refuse_for = 0.0
        self.on_command: Callable[[], None] | None = None
        self.seen = threading.Event()  # the armed command went through
        self.stall = False
        self._released = threading.Event()  # stalled answers may flow again
        self._refuse_until = 0.0
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(
        self,
        marker: bytes,
        *,
        cut: bool = False,
        stall: bool = False,
        refuse_for: float = 0.0,
        on_command: Callable[[], None] | None = None,
    ) -> None:
        with self._lock:
            self.marker, self.cut, self.refuse_for = marker, cut, refuse_for
            self.stall = stall
            self.on_command = on_command
            self.seen.clear()
            self._released.clear()

    def release(self) -> None:
        """Let the answers a stall held, and the ones after, through."""
        self._released.set()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def close(self) -> None:
        self._closed = True
        self._released.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if time.monotonic() < self._refuse_until:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            state = {"cut_pending": False, "stalled": False}
            threading.Thread(target=self._upward, args=(client, server, state), daemon=True).start()
            threading.Thread(
                target=self._downward, args=(server, client, state), daemon=True
            ).start()

    def _upward(self, client: socket.socket, server: socket.socket, state: dict[str, bool]) -> None:
        try:
            while data := client.recv(65536):
                with self._lock:
                    hit = self.marker is not None and self.marker in data
                    if hit:
                        self.marker = None  # once
                        callback, state["cut_pending"] = self.on_command, self.cut
                        state["stalled"] = self.stall
                if hit:
                    if callback is not None:
                        callback()
                    self.seen.set()
                server.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_WR)

    def _downward(
        self, server: socket.socket, client: socket.socket, state: dict[str, bool]
    ) -> None:
        try:
            while data := server.recv(65536):
                if state["cut_pending"]:
                    # The command ran; its answer never arrives.
                    self._refuse_until = time.monotonic() + self.refuse_for
                    _reset(client)
                    _reset(server)
                    return
                if state["stalled"]:
                    self._released.wait()  # silent, the connection open
                client.sendall(data)
        except OSError:
            pass
        finally:
            _reset(client)
            _reset(server)
