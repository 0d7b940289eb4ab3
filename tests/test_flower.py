"""Flower only starts with authentication, and then demands it."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import REDIS_URL


def _flower(*args: str, auth: str | None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    env["WEBHOOKS_REDIS_URL"] = REDIS_URL
    if auth is not None:
        env["FLOWER_BASIC_AUTH"] = auth
    return subprocess.Popen(
        [sys.executable, "-m", "webhooks", "flower", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_refuses_to_start_without_auth():
    for auth in (None, "", "admin:short", ":nouserpassword", "admin"):
        process = _flower(auth=auth)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 2, (auth, err)
        assert out == "" and len(err.strip().splitlines()) == 1, err
        assert "FLOWER_BASIC_AUTH" in err


@pytest.mark.slow
def test_with_auth_flower_demands_it(redis_client):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = _flower(f"--port={port}", "--address=127.0.0.1", auth="admin:correct-horse")
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 30
        while True:
            try:
                anonymous = requests.get(url, timeout=2)
                break
            except requests.ConnectionError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "Flower did not start"
                time.sleep(0.2)
        assert anonymous.status_code == 401
        assert requests.get(url, auth=("admin", "wrong-password"), timeout=5).status_code == 401
        assert requests.get(url, auth=("admin", "correct-horse"), timeout=5).status_code == 200
    finally:
        process.terminate()
        process.communicate(timeout=20)


def _listening_on(port: int) -> set[str]:
    """The IPv4 and IPv6 addresses with a socket listening on ``port`` (from /proc)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                if len(raw) == 4:
                    found.add(str(ipaddress.IPv4Address(raw[::-1])))
                else:  # four little-endian words
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(str(ipaddress.IPv6Address(words)))
    return found


@pytest.mark.slow
def test_flower_listens_on_loopback_unless_told_otherwise(redis_client):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = _flower(f"--port={port}", auth="admin:correct-horse")
    try:
        deadline = time.monotonic() + 30
        while not (listening := _listening_on(port)):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "Flower did not start"
            time.sleep(0.2)
        assert listening == {"127.0.0.1"}, listening
    finally:
        process.terminate()
        process.communicate(timeout=20)
