"""The README's first command: the demo runs end to end and ends as it says."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.conftest import database_url


@pytest.mark.slow
def test_demo_delivers_retries_and_exhausts(redis_client):
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "webhooks", "demo", "--retry-base", "0.0005"],
        env={**os.environ, "WEBHOOKS_REDIS_URL": database_url(10)},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "As expected" in result.stdout
    # 8 s of compressed retries plus worker start and stop; nothing may park it longer.
    assert time.monotonic() - started < 40
