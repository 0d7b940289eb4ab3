"""A light core: without the extras, a producer publishes, a receiver verifies and a
worker runs; what needs an extra says, in one line, which one to install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import database_url, event, own_database
from webhooks.extras import EXTRAS, installed

ROOT = Path(__file__).resolve().parent.parent
SHARED_URL = database_url(7)  # this module's database only
#: What the extras bring and the core must do without.
ABSENT = (
    "fastapi",
    "starlette",
    "uvicorn",
    "itsdangerous",
    "psycopg",
    "psycopg_pool",
    "httptools",
    "uvloop",
)

#: A producer and a receiver, as a user without extras writes them: publish to a tenant's
#: endpoint, then verify a signed request. Prints what it did as JSON.
SCRIPT = """
import json, sys, time
import webhooks
from webhooks.catalog import ScreenshotSetApproved
from webhooks.signing import signature_header
event, secret, absent = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:]
webhooks.get_tenants().add("acct_core", "Core")
webhooks.get_endpoints().add("https://hooks.example.com/core", tenant="acct_core")
ids = webhooks.publish(event, tenant="acct_core")
body, stamp = json.dumps(event).encode(), int(time.time())
headers = {"webhook-id": "msg_1", "webhook-timestamp": str(stamp),
           "webhook-signature": signature_header("msg_1", stamp, body, [secret])}
verified = webhooks.verify(body, headers, secret)
print(json.dumps({"ids": ids, "verified": verified["id"],
                  "loaded": [name for name in absent if sys.modules.get(name) is not None],
                  "model": ScreenshotSetApproved.__name__}))
"""

#: Makes the extras' packages unimportable in the process that runs this first.
BLOCK = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None\n"


@pytest.fixture
def shared(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    with own_database(7) as client:
        yield client


def _secret() -> str:
    from webhooks.signing import new_secret

    return new_secret()


def _run(
    python: str,
    code: str,
    *args: str,
    cwd: Path | None = None,
    settings: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "WEBHOOKS_REDIS_URL": SHARED_URL,
        "PYTHONPATH": "",
        **(settings or {}),
    }
    return subprocess.run(
        [python, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd or ROOT,
    )


def _check_core(done: subprocess.CompletedProcess[str], sent: dict[str, Any]) -> None:
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert len(result["ids"]) == 1 and result["verified"] == sent["id"]
    assert result["loaded"] == [], result  # nothing of an extra was imported
    assert result["model"] == "ScreenshotSetApproved"


def test_the_core_runs_without_the_extras(shared: redis.Redis) -> None:
    sent = event()
    blocked = BLOCK.format(names=ABSENT) + SCRIPT
    _check_core(_run(sys.executable, blocked, json.dumps(sent), _secret(), *ABSENT), sent)
    (delivery_key,) = [k for k in shared.scan_iter("webhooks:delivery:*") if b":attempts" not in k]
    assert shared.hget(delivery_key, "tenant_id") == b"acct_core"


def test_what_needs_an_extra_says_which_in_one_line(shared: redis.Redis) -> None:
    cases: tuple[tuple[list[str], str, dict[str, str]], ...] = (
        (["serve"], "server", {}),
        (["portal-link", "acct_1"], "server", {}),
        (["outbox", "init", "--dsn", "postgresql://nowhere/x"], "outbox", {}),
        (["archive", "init", "--dsn", "postgresql://nowhere/x"], "archive", {}),
        # Any command, once the setting asks for the archive.
        (["stats"], "archive", {"WEBHOOKS_ARCHIVE_DSN": "postgresql://nowhere/x"}),
    )
    for command, extra, settings in cases:
        code = BLOCK.format(names=ABSENT) + (
            "import sys\nsys.argv = ['webhooks', *sys.argv[1:]]\n"
            "from webhooks.cli import main\nmain()\n"
        )
        done = _run(sys.executable, code, *command, settings=settings)
        assert done.returncode == 1, (command, done.stderr)
        line = done.stderr.strip()
        assert "\n" not in line and "Traceback" not in done.stderr, done.stderr
        assert f"needs the '{extra}' extra" in line, line
        assert f"pip install 'celery-webhooks[{extra}]'" in line, line
    # The help says so too, without failing.
    done = _run(
        sys.executable,
        BLOCK.format(names=ABSENT)
        + (
            "import sys\nsys.argv = ['webhooks', '--help']\nfrom webhooks.cli import main\nmain()\n"
        ),
    )
    listed = " ".join(done.stdout.split())  # help wraps its lines
    assert done.returncode == 0, done.stderr
    assert "portal. (needs the 'server' extra)" in listed, listed
    assert "PostgreSQL. (needs the 'outbox' extra)" in listed, listed


def test_the_extras_name_what_they_install() -> None:
    # Every module an extra is said to bring is importable here (dev has every extra).
    for extra in EXTRAS:
        assert installed(extra), extra
    text = (ROOT / "pyproject.toml").read_text()
    core = text[text.index("dependencies = [") : text.index("[project.optional-dependencies]")]
    for package in ("fastapi", "uvicorn", "psycopg", "itsdangerous"):
        assert f'"{package}' not in core, package


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_pip_install_dot_gives_a_working_core(tmp_path: Path, shared: redis.Redis) -> None:
    """The done-when line as written: a fresh venv, ``pip install .`` with no extras
    (from the lock's versions), then publish, verify, and ``webhooks serve``'s refusal."""
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    python = str(target / "bin" / "python")
    started = time.monotonic()
    install = subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "-c",
            str(ROOT / "requirements.lock"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    print(f"pip install . took {time.monotonic() - started:.1f} s")
    have = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names = {row["name"].lower() for row in json.loads(have.stdout)}
    assert not names & {"fastapi", "uvicorn", "psycopg", "itsdangerous", "starlette"}, names
    sent = event()
    # From another folder, so that the checkout's own package is not the one imported.
    _check_core(_run(python, SCRIPT, json.dumps(sent), _secret(), *ABSENT, cwd=tmp_path), sent)
    served = subprocess.run(
        [str(target / "bin" / "webhooks"), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "WEBHOOKS_REDIS_URL": SHARED_URL},
    )
    assert served.returncode == 1
    assert served.stderr.strip() == (
        "Error: webhooks serve needs the 'server' extra, which is not installed: "
        "pip install 'celery-webhooks[server]'"
    )
