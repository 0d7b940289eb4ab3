"""Schemathesis, a fuzzer nobody here wrote, against a real ``webhooks serve`` and a real
Redis, with every check on: what the OpenAPI document says must be what the server
does (every status declared, every refusal stated, 405s with ``Allow``), and no 500.

It runs with the operator's token on a tenant with an endpoint and a delivery, whose
ids it is given, so that most generated requests reach the routes' logic instead of
a 404. It runs twice: first everything but DELETE, then the DELETEs, which would
otherwise delete what the rest needs. No worker runs, and every URL it may register
is on loopback (WEBHOOKS_ALLOWED_NETWORKS), so nothing is sent anywhere.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import event
from tests.web import Web

#: Cases per operation and phase: enough to cover each operation's parameters and
#: statuses in about 15 s on two cores.
EXAMPLES = 8

# What a schema-valid request may still get. 413: a body's size in bytes is not
# something JSON Schema states; 429: the rate limit on replays. 422, for four
# operations only, on rules that depend on more than the request's shape: the
# destination guard refuses URLs by where they lead (WEBHOOKS_ALLOWED_NETWORKS, DNS),
# recover's until must follow its since, and a cursor must be one the API gave. Those
# operations still get every other check, and the document declares these statuses.
# Strings are Latin-1: over it, the document's patterns state exactly what the server
# refuses (a tenant's name must be printable, which a pattern cannot state for all of
# Unicode).
_ACCEPTED = '"2xx", "401", "403", "404", "409", "413", "429"'
_CHECKS = f"""
[checks.positive_data_acceptance]
expected-statuses = [{_ACCEPTED}]
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "409", "413", "422", "429"]

[[operations]]
include-name = [
    "POST /api/v1/tenants/{{tenant_id}}/endpoints",
    "PATCH /api/v1/tenants/{{tenant_id}}/endpoints/{{endpoint_id}}",
    "POST /api/v1/tenants/{{tenant_id}}/endpoints/{{endpoint_id}}/recover",
    "GET /api/v1/tenants/{{tenant_id}}/deliveries",
]
checks.positive_data_acceptance.expected-statuses = [{_ACCEPTED}, "422"]
"""


def _config(path: Path, tenant: str, endpoint: str, delivery: str, cursor: str) -> Path:
    """The fuzzer's configuration: the fixtures' ids as the values it mostly uses."""
    path.write_text(
        f"""
[generation]
codec = "latin-1"

[dictionaries.tenants]
values = ["{tenant}"]
[dictionaries.endpoints]
values = ["{endpoint}"]
[dictionaries.deliveries]
values = ["{delivery}"]

[parameters]
"path.tenant_id" = {{ dictionary = "tenants", probability = 0.9 }}
"path.endpoint_id" = {{ dictionary = "endpoints", probability = 0.9 }}
"path.delivery_id" = {{ dictionary = "deliveries", probability = 0.9 }}
"query.endpoint_id" = {{ dictionary = "endpoints", probability = 0.5 }}
"query.cursor" = "{cursor}"
"body.url" = "http://127.0.0.1:9/fuzzed"
{_CHECKS}
"""
    )
    return path


def _run(web: Web, config: Path, tmp_path: Path, *selection: str) -> str:
    """One schemathesis run; its output, and the failures it found in it."""
    command = [
        # This interpreter's, whether or not its environment's bin is on PATH.
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{web.base}/openapi.json",
        "--header",
        f"Authorization: Bearer {web.operator_token}",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "23",
        "--workers",
        "1",
        "--no-color",
        "--report-dir",
        str(tmp_path),
        *selection,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    output = result.stdout + result.stderr
    # Without the reproducing requests, whose bodies may be megabytes long.
    summary = "\n".join(line for line in output.splitlines() if len(line) < 300)
    assert result.returncode == 0, summary[-20_000:]
    return output


def _tenants(web: Web) -> set[str]:
    found: set[str] = set()
    after = ""
    while True:
        page = web.call("GET", f"/api/v1/tenants?limit=200{after}").json()
        found |= {tenant["id"] for tenant in page["data"]}
        if page["next_after"] is None:
            return found
        after = "&after=" + urllib.parse.quote(page["next_after"], safe="")


@pytest.fixture
def forget_fuzzed(web: Web) -> Iterator[None]:
    """Delete the tenants the fuzzer registers, and with them what it made for them:
    the server and its Redis serve the other tests of this lane."""
    before = _tenants(web)
    yield
    for tenant in _tenants(web) - before:
        web.call("DELETE", f"/api/v1/tenants/{urllib.parse.quote(tenant, safe='')}")


@pytest.mark.slow
@pytest.mark.usefixtures("forget_fuzzed")
def test_schemathesis_finds_nothing(web: Web, tmp_path: Path) -> None:
    tenant = f"acct_fuzz_{uuid.uuid4().hex[:8]}"
    assert web.call("POST", "/api/v1/tenants", json={"id": tenant}).status_code == 201
    made = web.call(
        "POST", f"/api/v1/tenants/{tenant}/endpoints", json={"url": "http://127.0.0.1:9/"}
    )
    assert made.status_code == 201, made.text
    endpoint = made.json()["id"]
    published = web.call("POST", f"/api/v1/tenants/{tenant}/events", json=event())
    (delivery,) = published.json()["delivery_ids"]
    page = web.call("GET", f"/api/v1/tenants/{tenant}/deliveries?limit=1").json()
    cursor = page["next_cursor"] or base64.urlsafe_b64encode(f"1.0 {delivery}".encode()).decode()
    config = _config(tmp_path / "schemathesis.toml", tenant, endpoint, delivery, cursor)

    _run(web, config, tmp_path, "--exclude-method", "DELETE")
    # Generated requests reached the fixtures, not only 404s: the secret was rotated.
    rotated = web.call("GET", f"/api/v1/tenants/{tenant}/endpoints/{endpoint}").json()
    assert len(rotated["secrets"]) > 1, rotated
    _run(web, config, tmp_path, "--include-method", "DELETE")
    # The DELETEs did what they say, the tenant's last among them.
    assert web.call("GET", f"/api/v1/tenants/{tenant}").status_code == 404
    assert json.loads(web.call("GET", "/healthz").text) == {"status": "ok"}
