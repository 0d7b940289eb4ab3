"""The session cookie is ``__Host-`` under HTTPS, and portal tokens carry an
HMAC-SHA256 tag (issue 23): in this process over http and https, and against a real
``webhooks serve`` behind a proxy on loopback that says the client came over HTTPS."""

from __future__ import annotations

import base64

import itsdangerous
import pytest
import requests
from fastapi.testclient import TestClient

from tests.web import Web
from webhooks import portal_token
from webhooks.errors import TokenInvalid
from webhooks.system import get_default
from webhooks.web.app import create_app
from webhooks.web.tokens import read_portal_token


def test_portal_tokens_are_signed_with_hmac_sha256(tenant: str) -> None:
    token = portal_token(tenant)
    tag = token.rpartition(".")[2]
    assert len(base64.urlsafe_b64decode(tag + "=" * (-len(tag) % 4))) == 32
    assert read_portal_token(get_default(), token).tenant_id == tenant
    # The same claims signed the way links were before (itsdangerous' default,
    # HMAC-SHA1) no longer open the portal.
    secret = get_default().settings.portal_secret
    assert secret is not None
    sha1 = itsdangerous.URLSafeSerializer(secret.get_secret_value(), salt="webhooks.portal")
    _, claims = sha1.loads_unsafe(token)
    with pytest.raises(TokenInvalid, match="not valid"):
        read_portal_token(get_default(), sha1.dumps(claims))


@pytest.mark.parametrize(
    ("scheme", "name", "other"),
    [
        ("https", "__Host-webhooks_session", "webhooks_session"),
        ("http", "webhooks_session", "__Host-webhooks_session"),
    ],
)
def test_the_cookie_is_named_for_the_scheme(
    tenant: str, scheme: str, name: str, other: str
) -> None:
    browser = TestClient(create_app(get_default()), base_url=f"{scheme}://testserver")
    signed_in = browser.post("/api/v1/session", json={"token": portal_token(tenant)})
    assert signed_in.status_code == 201
    cookie = signed_in.headers["set-cookie"]
    assert cookie.startswith(f"{name}=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert "path=/" in cookie.lower() and "domain" not in attributes
    assert ("secure" in attributes) == (scheme == "https")
    session_id = browser.cookies[name]
    browser.cookies.clear()
    # Only the name set for this scheme is read: under HTTPS a plain cookie could
    # have been planted by a sibling subdomain or an HTTP answer.
    assert (
        browser.get("/api/v1/session", headers={"Cookie": f"{other}={session_id}"}).status_code
        == 401
    )
    assert (
        browser.get("/api/v1/session", headers={"Cookie": f"{name}={session_id}"}).status_code
        == 200
    )
    signed_out = browser.delete(
        "/api/v1/session",
        headers={"Cookie": f"{name}={session_id}", "X-CSRF-Token": signed_in.json()["csrf_token"]},
    )
    assert signed_out.status_code == 204
    removed = signed_out.headers["set-cookie"]
    assert removed.startswith(f'{name}=""') and ("Secure" in removed) == (scheme == "https")


@pytest.mark.slow
def test_a_trusted_proxys_https_gets_the_host_cookie(web: Web, tenant: str) -> None:
    """uvicorn takes X-Forwarded-Proto from the proxies FORWARDED_ALLOW_IPS names,
    127.0.0.1 by default: these requests come from there."""
    for headers, name in [
        ({"X-Forwarded-Proto": "https"}, "__Host-webhooks_session"),
        ({}, "webhooks_session"),
    ]:
        signed_in = requests.post(
            f"{web.base}/api/v1/session",
            json={"token": portal_token(tenant)},
            headers=headers,
            timeout=10,
        )
        assert signed_in.status_code == 201
        assert signed_in.headers["set-cookie"].startswith(f"{name}=")
        session_id = signed_in.cookies[name]
        seen = requests.get(
            f"{web.base}/api/v1/session",
            headers={**headers, "Cookie": f"{name}={session_id}"},
            timeout=10,
        )
        assert seen.status_code == 200
