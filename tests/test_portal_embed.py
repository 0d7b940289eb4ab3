"""A portal you can embed and brand (issue 25, part 5): which origins may frame it
(``WEBHOOKS_PORTAL_FRAME_ANCESTORS``), the framed portal's cookieless session, the
brand's settings and the embed snippet; then the portal framed by a page on a second
loopback origin in Chromium with third-party cookies blocked, and refused on another."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from pydantic import ValidationError

from tests.conftest import OPERATOR_TOKEN, PORTAL_SECRET, WORKER_ENV, event
from tests.test_cli import assert_one_line_error
from tests.test_pages import _css, _no_page_errors, _until, chromium
from tests.web import InProcess, Web
from webhooks import portal_token
from webhooks.cli import main
from webhooks.dev.receiver import Receiver
from webhooks.dev.server import free_port, start_server, stop_server
from webhooks.producer import publish
from webhooks.settings import Settings
from webhooks.system import get_default, get_endpoints
from webhooks.web.tokens import read_portal_token

LOGO = "https://logo.example.invalid/brand/logo.png"
ACCENT = "#0a7c4f"
ACCENT_RGB = "rgb(10, 124, 79)"


@pytest.fixture
def branded(settings_env: Callable[..., None], redis_client: redis.Redis) -> InProcess:
    """The application with a framing origin and a brand, in this process."""
    settings_env(
        portal_frame_ancestors="https://dash.example.com, http://localhost:8123/",
        portal_brand_name="Northwind Hooks",
        portal_brand_logo_url=LOGO,
        portal_brand_accent_color="#0A7C4F",
    )
    return InProcess(get_default(), OPERATOR_TOKEN)


@pytest.fixture
def tenant_id(tenant: str) -> str:
    """conftest's tenant, under the name these tests use."""
    return tenant


# --- Settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"portal_frame_ancestors": "https://a.example.com/dash"}, "origin 1 of 1"),
        ({"portal_frame_ancestors": "https://a.example.com,https://*.b.com"}, "origin 2 of 2"),
        ({"portal_frame_ancestors": "http://dash.example.com"}, "must be https://"),
        ({"portal_frame_ancestors": "https://a.com; script-src *"}, "scheme://host[:port]"),
        ({"portal_frame_ancestors": "https://a.com:70000"}, "scheme://host[:port]"),
        ({"portal_brand_logo_url": "http://cdn.example.com/logo.png"}, "https://"),
        ({"portal_brand_logo_url": "https://user:pw@cdn.example.com/l.png"}, "no credentials"),
        ({"portal_brand_logo_url": "javascript:alert(1)"}, "https://"),
        ({"portal_brand_logo_url": "https://cdn.example.com/a b.png"}, "spaces"),
        ({"portal_brand_accent_color": "red"}, "#rrggbb"),
        ({"portal_brand_accent_color": "#abc"}, "#rrggbb"),
        ({"portal_brand_accent_color": "#12345g"}, "#rrggbb"),
        ({"portal_brand_name": "x" * 61}, "at most 60"),
        ({"portal_brand_name": "Northwind\nHooks"}, "printable"),
    ],
)
def test_a_bad_embedding_or_brand_setting_is_refused(values: dict[str, str], says: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**values)  # type: ignore[arg-type]
    assert says in str(refused.value.errors()[0]["msg"])


def test_good_settings_are_read_as_origins_and_colours() -> None:
    settings = Settings(
        portal_frame_ancestors="https://Dash.Example.com:8443/, http://127.0.0.2:4000,"
        "http://localhost:5000",
        portal_brand_accent_color="#0A7C4F",
    )
    assert settings.portal_frame_ancestors == (
        "https://dash.example.com:8443",
        "http://127.0.0.2:4000",
        "http://localhost:5000",
    )
    assert settings.portal_brand_accent_color == "#0a7c4f"
    default = Settings()
    assert default.portal_frame_ancestors == ()
    assert default.portal_brand_logo_url is None and default.portal_brand_accent_color is None


@pytest.mark.parametrize("prefix", ["WEBHOOKS_PORTAL_BRAND_", "WEBHOOKS_PORTAL_"])
def test_logo_and_accent_are_read_under_either_name(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(prefix + "LOGO_URL", LOGO)
    monkeypatch.setenv(prefix + "ACCENT_COLOR", ACCENT)
    monkeypatch.setenv("WEBHOOKS_PORTAL_BRAND_NAME", "Northwind Hooks")
    settings = Settings()
    assert (
        settings.portal_brand_name,
        settings.portal_brand_logo_url,
        settings.portal_brand_accent_color,
    ) == ("Northwind Hooks", LOGO, ACCENT)


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        (
            "WEBHOOKS_PORTAL_ACCENT_COLOR",
            "red",
            "WEBHOOKS_PORTAL_BRAND_ACCENT_COLOR (or WEBHOOKS_PORTAL_ACCENT_COLOR): must be a "
            "colour written #rrggbb",
        ),
        (
            "WEBHOOKS_PORTAL_FRAME_ANCESTORS",
            "https://ok.example.com,ftp://files.example.com",
            "WEBHOOKS_PORTAL_FRAME_ANCESTORS: origin 2 of 2",
        ),
    ],
)
def test_serve_refuses_to_start_with_a_bad_one(setting: str, value: str, says: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "webhooks", "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, setting: value},
    )
    assert_one_line_error(result, says)


# --- Headers -------------------------------------------------------------------------


def test_only_the_portal_may_be_framed_by_the_allowed_origins(branded: InProcess) -> None:
    for path in ("/portal", "/portal/tenants/acct_1/deliveries"):
        answer = branded.call("GET", path, None)
        policy = answer.headers["content-security-policy"]
        assert "frame-ancestors https://dash.example.com http://localhost:8123;" in policy
        assert "img-src 'self' https://logo.example.invalid;" in policy
        assert "script-src 'self';" in policy and "unsafe-inline" not in policy
        assert "x-frame-options" not in answer.headers
    for path in ("/console", "/api/v1/brand", "/static/app.js", "/healthz", "/api/v1/nope"):
        answer = branded.call("GET", path, None)
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], path
        assert "img-src 'self';" in answer.headers["content-security-policy"], path
        assert answer.headers["x-frame-options"] == "DENY", path


def test_by_default_nothing_may_frame_the_portal(api: InProcess) -> None:
    answer = api.call("GET", "/portal", None)
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY"


def test_a_logo_alone_widens_images_but_framing_stays_denied(
    settings_env: Callable[..., None], redis_client: redis.Redis
) -> None:
    settings_env(portal_logo_url=LOGO)
    answer = InProcess(get_default(), OPERATOR_TOKEN).call("GET", "/portal", None)
    policy = answer.headers["content-security-policy"]
    assert "img-src 'self' https://logo.example.invalid;" in policy
    assert "frame-ancestors 'none'" in policy and answer.headers["x-frame-options"] == "DENY"


# --- The brand ------------------------------------------------------------------------


def test_the_brand_is_public(branded: InProcess, api: InProcess) -> None:
    answer = branded.call("GET", "/api/v1/brand", None)
    assert answer.status_code == 200
    assert answer.json() == {
        "name": "Northwind Hooks",
        "logo_url": LOGO,
        "accent_color": ACCENT,
    }


# --- The embedded session -------------------------------------------------------------


def _embedded(web: InProcess, tenant_id: str) -> tuple[str, Any]:
    answer = web.call(
        "POST",
        "/api/v1/session",
        None,
        json={"token": portal_token(tenant_id), "embedded": True},
    )
    assert answer.status_code == 201, answer.text
    assert "set-cookie" not in answer.headers  # nothing a framed page would not get
    body = answer.json()
    assert body["role"] == "tenant" and body["tenant_id"] == tenant_id
    assert body["session_token"].startswith("session_")
    return str(body["session_token"]), body


def test_an_embedded_session_is_a_bearer_credential_without_a_cookie(
    api: InProcess, tenant_id: str
) -> None:
    token, _ = _embedded(api, tenant_id)
    path = f"/api/v1/tenants/{tenant_id}/endpoints"
    assert api.call("GET", path, token).status_code == 200
    assert api.call("GET", "/api/v1/session", token).json()["tenant_id"] == tenant_id
    # Scope: still one tenant's.
    assert api.call("GET", "/api/v1/tenants", token).status_code == 403
    assert api.call("GET", "/api/v1/tenants/acct_other/endpoints", token).status_code == 404
    # A change needs no CSRF token (no browser sends the header by itself), but one from
    # another site's page is refused as with a cookie.
    body = {"url": "http://127.0.0.1:9/embedded"}
    own = {"Origin": api.base}
    assert api.call("POST", path, token, json=body, headers=own).status_code == 201
    foreign = {"Origin": "https://evil.example"}
    refused = api.call("POST", path, token, json=body, headers=foreign)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "cross_site"
    # An unknown or altered credential is a 401 that does not repeat it.
    for wrong in ("session_" + "x" * 43, token[:-2] + "zz", "session_"):
        answer = api.call("GET", path, wrong)
        assert answer.status_code == 401 and wrong not in answer.text
    # Signing out ends it.
    assert api.call("DELETE", "/api/v1/session", token, headers=own).status_code == 204
    assert api.call("GET", path, token).status_code == 401


def test_an_embedded_session_ends_as_every_session_does(api: InProcess, tenant_id: str) -> None:
    token, _ = _embedded(api, tenant_id)
    path = f"/api/v1/tenants/{tenant_id}/stats"
    assert api.call("GET", path, token).status_code == 200
    assert get_default().sessions.forget_tenant(tenant_id) == 1  # sessions revoke --tenant
    assert api.call("GET", path, token).status_code == 401


def test_only_a_portal_token_opens_an_embedded_session(api: InProcess) -> None:
    answer = api.call(
        "POST", "/api/v1/session", None, json={"token": OPERATOR_TOKEN, "embedded": True}
    )
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "embedded"
    assert "set-cookie" not in answer.headers
    answer = api.call(
        "POST", "/api/v1/session", None, json={"token": "not-a-token", "embedded": True}
    )
    assert answer.status_code == 401


# --- The embed snippet -----------------------------------------------------------------


def test_portal_link_embed_prints_the_iframe(
    settings_env: Callable[..., None], redis_client: redis.Redis, tenant_id: str
) -> None:
    settings_env(portal_frame_ancestors="https://dash.example.com", portal_brand_name='A "B" <C>')
    result = CliRunner().invoke(
        main, ["portal-link", tenant_id, "--embed", "--base-url", "https://hooks.example.com"]
    )
    assert result.exit_code == 0, result.output
    snippet = result.stdout.strip()
    assert snippet.startswith('<iframe src="https://hooks.example.com/portal#token=')
    assert snippet.endswith("></iframe>") and "\n" not in snippet
    assert 'title="A &quot;B&quot; &lt;C&gt; portal"' in snippet
    token = snippet.split("#token=", 1)[1].split('"', 1)[0]
    assert read_portal_token(get_default(), token).tenant_id == tenant_id
    assert result.stderr == ""

    settings_env(portal_frame_ancestors="")
    warned = CliRunner().invoke(main, ["portal-link", tenant_id, "--embed"])
    assert warned.exit_code == 0 and warned.stdout.startswith("<iframe ")
    assert "WEBHOOKS_PORTAL_FRAME_ANCESTORS is empty" in warned.stderr


# --- Framed in Chromium -----------------------------------------------------------------


class HostPage:
    """Another site's page that frames the portal: a tiny HTTP server on 127.0.0.1,
    reached as ``http://localhost:PORT`` (a site of its own: the portal, on 127.0.0.1,
    is third-party in its frame) or as ``http://127.0.0.1:PORT`` (another origin)."""

    def __init__(self) -> None:
        self.frame_src = "about:blank"
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = (
                    "<!doctype html><title>Dashboard</title><h1>Our dashboard</h1>"
                    f'<iframe id="portal" src="{page.frame_src}" width="1000" height="700">'
                    "</iframe>"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def allowed(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def other(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def host_page() -> Iterator[HostPage]:
    page = HostPage()
    yield page
    page.close()


@pytest.fixture(scope="module")
def embeddable(
    redis_client: redis.Redis, host_page: HostPage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Web]:
    """``webhooks serve`` letting the host page's localhost origin frame its portal,
    with a brand."""
    log = tmp_path_factory.mktemp("embeddable") / "serve.log"
    process, base = start_server(
        log,
        {
            **WORKER_ENV,
            "WEBHOOKS_API_TOKEN": OPERATOR_TOKEN,
            "WEBHOOKS_PORTAL_SECRET": PORTAL_SECRET,
            "WEBHOOKS_PORTAL_FRAME_ANCESTORS": host_page.allowed,
            "WEBHOOKS_PORTAL_BRAND_NAME": "Northwind Hooks",
            "WEBHOOKS_PORTAL_LOGO_URL": LOGO,
            "WEBHOOKS_PORTAL_ACCENT_COLOR": ACCENT,
        },
    )
    yield Web(base, OPERATOR_TOKEN, log)
    stop_server(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium blocking third-party cookies, as Safari, Firefox and Chromium's own
    incognito windows do."""
    # cookie_controls_mode 1: "block third-party cookies", as the settings page sets it.
    driver = chromium(
        {"profile.block_third_party_cookies": True, "profile.cookie_controls_mode": 1}
    )
    yield driver
    driver.quit()


@pytest.mark.usefixtures("worker")
def test_an_allowed_origin_frames_the_portal_without_cookies_and_another_is_refused(
    browser: Any,
    embeddable: Web,
    host_page: HostPage,
    receiver: Receiver,
    tenant_id: str,
    wait_for: Callable[..., Any],
) -> None:
    endpoint, _ = get_endpoints().add(receiver.url("/ok/embedded"), tenant=tenant_id)
    ids = [i for _ in range(2) for i in publish(event(), tenant=tenant_id)]
    for delivery_id in ids:
        wait_for(delivery_id)

    link_token = portal_token(tenant_id)
    host_page.frame_src = f"{embeddable.base}/portal#token={link_token}"
    browser.get(host_page.allowed + "/")
    browser.switch_to.frame(browser.find_element("id", "portal"))
    try:
        rows = "#deliveries tbody tr[data-delivery]"
        _until(browser, lambda: len(_css(browser, rows)) == 2)
        assert {row.get_attribute("data-delivery") for row in _css(browser, rows)} == set(ids)
        assert {badge.text for badge in _css(browser, f"{rows} .badge")} == {"delivered"}
        # Signed in with no cookie: the frame may not keep one (third-party cookies are
        # blocked here), and the portal never set one.
        probe = "document.cookie = 'probe=1; SameSite=None; Secure'; return document.cookie"
        assert browser.execute_script(probe) == ""
        assert browser.get_cookies() == []
        held = browser.execute_script("return state.bearer")  # the page's memory only
        assert held.startswith("session_")
        assert browser.execute_script("return [localStorage.length, sessionStorage.length]") == [
            0,
            0,
        ]
        # The brand, applied under the portal's CSP (no inline style).
        assert _css(browser, "#brand")[0].text == "Northwind Hooks"
        assert browser.execute_script("return document.title") == "Northwind Hooks"
        assert _css(browser, "#brand-logo")[0].get_attribute("src") == LOGO
        link_colour = "return getComputedStyle(document.querySelector('#deliveries a')).color"
        assert browser.execute_script(link_colour) == ACCENT_RGB
        # A change from the frame: the bearer credential, with no CSRF cookie to forge.
        _css(browser, "#nav a")[1].click()
        _until(browser, lambda: _css(browser, f'tr[data-endpoint="{endpoint.id}"] .toggle'))
        _css(browser, f'tr[data-endpoint="{endpoint.id}"] .toggle')[0].click()
        _until(browser, lambda: not get_endpoints().get(endpoint.id).enabled)
        _no_page_errors(browser)
    finally:
        browser.switch_to.default_content()
    served = embeddable.log.read_text()
    assert link_token not in served and held not in served  # never logged

    # The same page on an origin the setting does not name: the browser refuses to
    # render the portal in its frame, and says why.
    browser.get(host_page.other + "/")
    seen: list[str] = []

    def refused() -> bool:
        seen.extend(entry["message"] for entry in browser.get_log("browser"))
        return any("frame-ancestors" in message for message in seen)

    _until(browser, refused)
    browser.switch_to.frame(browser.find_element("id", "portal"))
    try:
        assert not browser.execute_script("return location.href").startswith(embeddable.base)
        assert _css(browser, "#main") == []
    finally:
        browser.switch_to.default_content()
