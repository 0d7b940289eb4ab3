"""A self-signed certificate for ``localhost`` and an HTTPS receiver that serves it: for
the tests of HTTPS through the pinned adapter, directly and through the egress proxy."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

from tests.conftest import missing
from webhooks.dev.receiver import Receiver


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for ``localhost`` (valid a day), written in ``folder``."""
    if shutil.which("openssl") is None:
        missing("openssl is needed to make a test certificate")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(folder / "key.pem"),
            "-out",
            str(folder / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    return folder / "cert.pem", folder / "key.pem"


def serve_tls(receiver: Receiver, certificate: tuple[Path, Path]) -> Receiver:
    """``receiver``, answering HTTPS with ``certificate`` at https://localhost:PORT."""
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    port = receiver.base.rsplit(":", 1)[1]
    receiver.base = f"https://localhost:{port}"
    return receiver
