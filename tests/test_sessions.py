"""Web sessions end with what granted them: their tenant as it was, and the credential
(the operator's token, the portal secret); and ``webhooks sessions revoke`` ends them
on demand. Against a real ``webhooks serve`` and real Redis, except where the CLI's
own process is the point."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from click.testing import CliRunner

from tests.conftest import OPERATOR_TOKEN, PORTAL_SECRET, WORKER_ENV, event
from tests.web import InProcess, Web
from webhooks.cli import main
from webhooks.dev.receiver import Receiver
from webhooks.dev.server import start_server, stop_server
from webhooks.system import get_tenants
from webhooks.web.tokens import portal_token


def _sign_in(web: Web | InProcess, token: str) -> tuple[Any, str | None]:
    """A browser signed in with ``token``, and its CSRF token (None if refused)."""
    browser = web.browser()
    answer = web.call("POST", "/api/v1/session", None, json={"token": token}, session=browser)
    return browser, answer.json()["csrf_token"] if answer.status_code == 201 else None


def _post(web: Web | InProcess, browser: Any, csrf: str, path: str, body: Any = None) -> Any:
    """A page's state-changing request: with its session and its CSRF token."""
    return web.call("POST", path, None, json=body, session=browser, headers={"X-CSRF-Token": csrf})


def test_a_session_never_outlives_its_tenant_under_a_race(web: Web) -> None:
    """Sign-ins raced against deleting the tenant and registering it again: no session
    made with the old tenant's link works for the new one."""
    tenants = get_tenants()
    working, signed_in = 0, 0
    for _ in range(50):
        tenant_id = f"acct_race_{uuid.uuid4().hex[:8]}"
        tenants.add(tenant_id)
        token = portal_token(tenant_id)
        start = threading.Barrier(2)
        made: list[tuple[Any, str | None]] = []

        def sign_in(
            token: str, start: threading.Barrier, made: list[tuple[Any, str | None]]
        ) -> None:
            start.wait()
            made.append(_sign_in(web, token))

        thread = threading.Thread(target=sign_in, args=(token, start, made))
        thread.start()
        start.wait()
        tenants.delete(tenant_id)
        tenants.add(tenant_id)
        thread.join(10)
        browser, csrf = made[0]
        if csrf is not None:
            signed_in += 1
            status = _post(
                web,
                browser,
                csrf,
                f"/api/v1/tenants/{tenant_id}/endpoints",
                {"url": "https://example.com/hook"},
            ).status_code
            assert status == 401, status
            working += status == 201
        tenants.delete(tenant_id)
    assert working == 0
    # The race is real: some sign-ins won it and were then refused on use.
    print(f"{signed_in} of 50 sign-ins were made before the deletion")


@pytest.fixture
def rotated(tmp_path: Path) -> Iterator[dict[str, Web]]:
    """Two more servers on the same Redis: one restarted with a new operator token, one
    with a new portal secret."""
    servers: dict[str, Web] = {}
    processes = []
    for name, token, secret in [
        ("new_token", "a-new-operator-token-0123456789", PORTAL_SECRET),
        ("new_secret", OPERATOR_TOKEN, "a-new-portal-secret-0123456789abcdef"),
    ]:
        env = {**WORKER_ENV, "WEBHOOKS_API_TOKEN": token, "WEBHOOKS_PORTAL_SECRET": secret}
        process, base = start_server(tmp_path / f"{name}.log", env)
        processes.append(process)
        servers[name] = Web(base, token, tmp_path / f"{name}.log")
    yield servers
    for process in processes:
        stop_server(process)


def test_rotating_a_credential_ends_the_sessions_it_made(
    web: Web, rotated: dict[str, Web], redis_client: redis.Redis
) -> None:
    tenant_id = f"acct_rot_{uuid.uuid4().hex[:8]}"
    get_tenants().add(tenant_id)
    try:
        operator, _ = _sign_in(web, OPERATOR_TOKEN)
        portal, _ = _sign_in(web, portal_token(tenant_id))

        def status(server: Web, browser: requests.Session) -> int:
            # The cookie as the browser holds it, sent to another server on the same Redis.
            cookies = {cookie.name: cookie.value or "" for cookie in browser.cookies}
            return requests.get(
                f"{server.base}/api/v1/tenants/{tenant_id}/endpoints", cookies=cookies, timeout=10
            ).status_code

        assert status(rotated["new_secret"], operator) == 200
        assert status(rotated["new_token"], portal) == 200
        assert status(rotated["new_token"], operator) == 401
        assert status(rotated["new_secret"], portal) == 401
        # Refused once, a session is gone: the old credential does not bring it back.
        assert status(web, operator) == 401 and status(web, portal) == 401
    finally:
        get_tenants().delete(tenant_id)


def test_sessions_revoke(api: InProcess) -> None:
    tenants = get_tenants()
    first, second = (f"acct_rev_{uuid.uuid4().hex[:8]}" for _ in range(2))
    for tenant_id in (first, second):
        tenants.add(tenant_id)
    try:
        browsers = {
            "first": (_sign_in(api, portal_token(first))[0], first),
            "second": (_sign_in(api, portal_token(second))[0], second),
            "operator": (_sign_in(api, OPERATOR_TOKEN)[0], first),
        }

        def works() -> dict[str, bool]:
            return {
                name: api.call(
                    "GET", f"/api/v1/tenants/{tenant_id}/endpoints", None, session=browser
                ).status_code
                == 200
                for name, (browser, tenant_id) in browsers.items()
            }

        assert works() == {"first": True, "second": True, "operator": True}
        result = CliRunner().invoke(main, ["sessions", "revoke", "--tenant", first])
        assert result.exit_code == 0 and result.output == f"ended 1 session of tenant {first}\n"
        assert works() == {"first": False, "second": True, "operator": True}
        result = CliRunner().invoke(main, ["sessions", "revoke", "--all"])
        assert result.exit_code == 0 and result.output.startswith("ended ")
        assert int(result.output.split()[1]) >= 2
        assert works() == {"first": False, "second": False, "operator": False}
    finally:
        for tenant_id in (first, second):
            tenants.delete(tenant_id)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "--tenant/--all: give exactly one of them"),
        (["--all", "--tenant", "acct_1"], "--tenant/--all: give exactly one of them"),
        (["--tenant", "no such:id*"], "--tenant: a tenant id is"),
    ],
)
def test_sessions_revoke_refuses_in_one_line(args: list[str], says: str) -> None:
    result = CliRunner().invoke(main, ["sessions", "revoke", *args])
    assert result.exit_code != 0
    assert says in result.output and len(result.output.strip().splitlines()) == 1


def test_redeliver_is_rate_limited_per_tenant_across_servers(
    web: Web, api: InProcess, receiver: Receiver
) -> None:
    """Ten redeliver or recover calls a minute from a tenant's portal, counted in Redis
    whichever server takes them; the eleventh gets 429 with Retry-After. The operator's
    limit is its own."""
    tenant_id = f"acct_rate_{uuid.uuid4().hex[:8]}"
    get_tenants().add(tenant_id)
    try:
        token = portal_token(tenant_id)
        base = f"/api/v1/tenants/{tenant_id}"
        endpoint = web.call(
            "POST", f"{base}/endpoints", token, json={"url": receiver.url("/ok/rate")}
        ).json()
        published = web.call("POST", f"{base}/events", json=event()).json()
        delivery_id = published["delivery_ids"][0]
        redeliver = f"{base}/deliveries/{delivery_id}/redeliver"
        browser, csrf = _sign_in(web, token)
        assert csrf is not None
        answers = []
        for server in (api, web, api, web, api, web, api, web, api):
            answers.append(server.call("POST", redeliver, token).status_code)
        recover = f"{base}/endpoints/{endpoint['id']}/recover"
        since = {"since": "2026-01-01T00:00:00Z"}
        answers.append(_post(web, browser, csrf, recover, since).status_code)
        assert answers == [202] * 10
        refused = _post(web, browser, csrf, redeliver)
        assert refused.status_code == 429, refused.text
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.json()["error"]["code"] == "rate_limited"
        assert api.call("POST", redeliver, token).status_code == 429
        # The operator's own limit still has room.
        assert web.call("POST", redeliver).status_code == 202
    finally:
        get_tenants().delete(tenant_id)
