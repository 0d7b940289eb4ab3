"""A real forward proxy on loopback (Debian's ``tinyproxy``), for the tests and the bench
of ``WEBHOOKS_EGRESS_PROXY``.

It listens on 127.0.0.1 and makes its own connections from ``bind`` (127.0.0.2 by
default), so a receiver on 127.0.0.1 tells a request that came through the proxy (its
peer is 127.0.0.2) from one sent directly (127.0.0.1). Its configuration has no
``ConnectPort`` line, so it tunnels to any port, as the receivers' are random.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from .processes import terminate
from .server import free_port

__all__ = ["ForwardProxy", "tinyproxy_binary"]


def tinyproxy_binary() -> str | None:
    """Where ``tinyproxy`` is installed (``apt-get install tinyproxy``), if it is."""
    return shutil.which("tinyproxy") or next(
        (path for path in ("/usr/bin/tinyproxy", "/usr/sbin/tinyproxy") if Path(path).exists()),
        None,
    )


class ForwardProxy:
    """``tinyproxy`` in the foreground, on a port of its own; :meth:`stop` and
    :meth:`start` take it away and bring it back on the same port."""

    def __init__(
        self,
        bind: str = "127.0.0.2",
        credentials: tuple[str, str] | None = None,
    ) -> None:
        binary = tinyproxy_binary()
        if binary is None:
            raise RuntimeError("tinyproxy is not installed: apt-get install tinyproxy")
        self.binary = binary
        self.port = free_port()
        self.bind = bind
        self.credentials = credentials
        self._folder = tempfile.TemporaryDirectory(prefix="webhooks-proxy-")
        self.log = Path(self._folder.name) / "tinyproxy.log"
        self._config = Path(self._folder.name) / "tinyproxy.conf"
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            f"Bind {bind}",
            "Timeout 30",
            "MaxClients 200",
            "LogLevel Connect",  # a line per client connection: see connections()
            "DisableViaHeader Yes",
        ]
        if credentials is not None:
            lines.append(f"BasicAuth {credentials[0]} {credentials[1]}")
        self._config.write_text("\n".join(lines) + "\n")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """What WEBHOOKS_EGRESS_PROXY is set to, credentials included."""
        auth = f"{self.credentials[0]}:{self.credentials[1]}@" if self.credentials else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def start(self, ready_within: float = 10.0) -> None:
        with self.log.open("ab") as log:  # in the foreground, it logs to stdout
            self._process = subprocess.Popen(
                [self.binary, "-d", "-c", str(self._config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + ready_within
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"tinyproxy did not start on 127.0.0.1:{self.port}; its log:\n"
                        + (self.log.read_text(errors="replace") if self.log.exists() else "")
                    ) from None
                time.sleep(0.05)

    @property
    def pid(self) -> int | None:
        """The running tinyproxy's process id (its threads serve the connections)."""
        return self._process.pid if self._process is not None else None

    def connections(self) -> int:
        """How many connections the proxy has accepted so far, restarts included."""
        if not self.log.exists():
            return 0
        return self.log.read_text(errors="replace").count("Connect (file descriptor")

    def stop(self) -> None:
        if self._process is not None:
            terminate(self._process, grace=5.0)
            self._process = None

    def __enter__(self) -> ForwardProxy:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        self._folder.cleanup()
