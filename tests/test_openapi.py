"""What the OpenAPI document declares, HEAD wherever GET is, and 405s that carry
``Allow``: checked over every path of the document, so a new route is covered as
it comes. (What a fuzzer makes of the document is tests/test_openapi_fuzz.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.web import InProcess, Web
from webhooks.ids import DELIVERY_ID, ENDPOINT_ID, TENANT_ID
from webhooks.system import get_endpoints
from webhooks.web.app import ID_PATTERNS, SECURITY
from webhooks.web.errors import STATUSES

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


@pytest.fixture
def document(api: InProcess) -> dict[str, Any]:
    answer = api.call("GET", "/openapi.json", None)
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method.upper(), operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_every_error_answer_is_declared_with_its_body(document: dict[str, Any]) -> None:
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    detail = document["components"]["schemas"]["ErrorDetail"]
    assert set(detail["properties"]) == {"code", "message", "field"}
    assert set(detail["required"]) == {"code", "message"}
    assert "HTTPValidationError" not in json.dumps(document)
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        declared = {int(status) for status in responses}
        places = {parameter["in"] for parameter in operation.get("parameters", [])}
        assert {413, 500, 503} <= declared, (method, path)
        if "path" in places:
            assert 404 in declared, (method, path)
        if "query" in places or "requestBody" in operation:
            assert 422 in declared, (method, path)
        # The portal's brand is public: the page is branded before anyone signs in.
        public = (method, path) == ("GET", "/api/v1/brand")
        if (path.startswith("/api/v1/") or path == "/metrics") and not public:
            assert 401 in declared, (method, path)
            assert responses["401"]["headers"]["WWW-Authenticate"]
            # Signing in takes a token in its body, not credentials.
            signing_in = (method, path) == ("POST", "/api/v1/session")
            assert operation.get("security") == (None if signing_in else SECURITY), path
        if method not in ("GET", "HEAD") and path.startswith("/api/v1/tenants"):
            assert 403 in declared, (method, path)  # a session's change without CSRF
        for status in declared - {200, 201, 202, 204}:
            schema = responses[str(status)]["content"]["application/json"]["schema"]
            if path != "/healthz":
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
            if path != "/healthz" and (path, status) != ("/api/v1/session", 404):
                assert responses[str(status)]["description"] == STATUSES[status]
    paths = document["paths"]
    assert "409" in paths["/api/v1/tenants"]["post"]["responses"]
    assert "403" in paths["/api/v1/stats"]["get"]["responses"]  # the operator's alone
    assert "security" not in paths["/healthz"]["get"]
    assert "security" not in paths["/api/v1/brand"]["get"]
    assert "401" not in paths["/api/v1/brand"]["get"]["responses"]


def test_every_constraint_the_validator_enforces_is_stated(document: dict[str, Any]) -> None:
    assert ID_PATTERNS == {
        "tenant_id": TENANT_ID,
        "endpoint_id": ENDPOINT_ID,
        "delivery_id": DELIVERY_ID,
    }
    for path, method, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path" or parameter["name"] in ID_PATTERNS:
                assert parameter["schema"]["pattern"] == ID_PATTERNS[parameter["name"]], (
                    method,
                    path,
                    parameter,
                )
    schemas = document["components"]["schemas"]
    tenant = schemas["TenantIn"]["properties"]
    assert tenant["id"]["pattern"] == TENANT_ID
    assert tenant["name"]["maxLength"] == 200 and tenant["name"]["pattern"]
    endpoint = schemas["EndpointIn"]["properties"]
    assert endpoint["url"]["maxLength"] == 2048 and endpoint["url"]["minLength"] == 1
    assert endpoint["description"]["maxLength"] == 1000
    headers = endpoint["headers"]["anyOf"][0]
    assert headers["maxProperties"] == 20 and "Host" not in headers["propertyNames"]["pattern"]
    assert endpoint["event_types"]["anyOf"][0]["items"]["enum"]  # the registered types
    patch = schemas["EndpointPatch"]["properties"]
    # Null is refused for these, so the document neither allows it nor defaults to it.
    for name in ("url", "description", "headers", "enabled"):
        assert "anyOf" not in patch[name] and "default" not in patch[name], name
    listing = document["paths"]["/api/v1/tenants"]["get"]["parameters"]
    after = next(p for p in listing if p["name"] == "after")["schema"]["anyOf"][0]
    assert after["pattern"] == TENANT_ID


def test_what_the_document_states_is_refused(api: InProcess, tenant: str) -> None:
    """The stated rules are the server's: a schema-valid {"id": ""} was once refused."""
    assert api.call("POST", "/api/v1/tenants", json={"id": ""}).status_code == 422
    endpoint, _ = get_endpoints().add("http://127.0.0.1:9/", tenant=tenant)
    for body in ({"url": None}, {"enabled": None}, {"headers": {"Host": "x"}}):
        answer = api.call("PATCH", f"/api/v1/tenants/{tenant}/endpoints/{endpoint.id}", json=body)
        assert answer.status_code == 422, (body, answer.text)
    # A body that is not JSON at all, or not UTF-8: a 422 naming the body, as declared.
    for raw in (b"\xff\xfe{", b"{"):
        answer = api.call(
            "POST",
            "/api/v1/tenants",
            data=raw,
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 422 and answer.json()["error"]["field"] == "body", raw
    created = api.call(
        "POST", f"/api/v1/tenants/{tenant}/events", data=b"\xff", headers={"Content-Type": "x"}
    )
    assert created.status_code == 422, created.text


def _filled(path: str, tenant: str) -> str:
    ids = {"tenant_id": tenant, "endpoint_id": "ep_" + "0" * 24, "delivery_id": "0" * 8}
    return path.format(**ids)


def test_405_names_every_method_the_path_takes(
    api: InProcess, document: dict[str, Any], tenant: str
) -> None:
    for path, item in document["paths"].items():
        declared = {method.upper() for method in item}
        allowed = declared | ({"HEAD"} if "GET" in declared else set())
        for method in sorted(set(METHODS) - declared):
            answer = api.call(method, _filled(path, tenant))
            assert answer.status_code == 405, (method, path, answer.text)
            assert set(answer.headers["allow"].split(", ")) == allowed, (method, path)
            assert answer.json()["error"]["code"] == "method_not_allowed"
    # The pages and the static files, outside the document, too.
    for path in ("/console", "/portal/anything", "/static/app.js", "/"):
        answer = api.call("POST", path, None)
        assert answer.status_code == 405 and answer.headers["allow"] == "GET, HEAD", path


def test_head_answers_as_get_without_the_body(api: InProcess, tenant: str) -> None:
    for path, token in (
        ("/healthz", None),
        ("/console", None),
        ("/portal/deliveries", None),
        ("/static/app.js", None),
        ("/openapi.json", None),
        (f"/api/v1/tenants/{tenant}", "operator"),
        (f"/api/v1/tenants/{tenant}/deliveries", "operator"),
        ("/api/v1/tenants/acct_missing", "operator"),
        (f"/api/v1/tenants/{tenant}", None),
    ):
        got, head = api.call("GET", path, token), api.call("HEAD", path, token)
        assert head.status_code == got.status_code, path
        assert head.text == "" and got.text, path
        for name in ("content-type", "content-length", "content-security-policy"):
            assert head.headers.get(name) == got.headers.get(name), (path, name)
    # HEAD is not a way around a method: a POST-only path refuses it as it refuses GET.
    refused = api.call("HEAD", f"/api/v1/tenants/{tenant}/events")
    assert refused.status_code == 405 and refused.headers["allow"] == "POST"


def test_head_and_allow_through_a_real_server(web: Web) -> None:
    """uvicorn, not only the application: a HEAD gets the GET's headers and no body."""
    with requests.head(web.base + "/healthz", timeout=10) as head:
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(b'{"status":"ok"}'))
    refused = web.call("PUT", "/api/v1/tenants")
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD, POST"
