"""Test events: the catalog's example sent to one endpoint as a real delivery (signed,
recorded, marked as a test), through the API, the CLI and the portal's button; limited
per endpoint; and every way a test is refused."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import standardwebhooks

import webhooks
from tests.conftest import event
from tests.test_cli import assert_one_line_error, invoke
from tests.test_pages import _console, _css, _no_page_errors, _sign_in, _until, browser  # noqa: F401
from tests.web import InProcess, Web
from webhooks import portal_token
from webhooks.dev.receiver import Receiver
from webhooks.errors import EndpointNotFound
from webhooks.events import event_example
from webhooks.models import Delivery, DeliveryStatus
from webhooks.producer import publish
from webhooks.system import get_endpoints, get_store, get_tenants

APPROVED = "screenshot_set.approved"


def _path(tenant: str, endpoint_id: str) -> str:
    return f"/api/v1/tenants/{tenant}/endpoints/{endpoint_id}/test"


def _unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex[:10]}"


@pytest.mark.usefixtures("worker")
def test_a_test_event_is_a_signed_delivery_of_the_example(
    web: Web, tenant: str, receiver: Receiver, wait_for: Callable[..., Delivery]
) -> None:
    route = _unique("/ok")
    endpoint, secret = get_endpoints().add(receiver.url(route), [APPROVED], tenant=tenant)
    token = portal_token(tenant)  # the customer's own portal may send one
    answer = web.call("POST", _path(tenant, endpoint.id), token)
    assert answer.status_code == 202, answer.text
    delivery_id = answer.json()["delivery_id"]
    assert wait_for(delivery_id).status is DeliveryStatus.DELIVERED
    (published,) = publish(event(), tenant=tenant)  # a real event beside it, not a test
    wait_for(published)

    test_request, real_request = receiver.received(route)
    # Verified with the reference library, with the endpoint's own secret.
    sent = standardwebhooks.Webhook(secret).verify(test_request.body, test_request.headers)
    assert test_request.headers["webhook-test"] == "true"
    assert "webhook-test" not in real_request.headers
    # The catalog's example, exactly.
    example = event_example(APPROVED)
    assert example is not None and sent == example
    assert json.loads(test_request.body) == sent

    base = f"/api/v1/tenants/{tenant}/deliveries"
    shown = web.call("GET", f"{base}/{delivery_id}", token).json()
    assert shown["test"] is True and shown["event_type"] == APPROVED
    assert web.call("GET", f"{base}/{published}", token).json()["test"] is False
    listed = {d["id"]: d["test"] for d in web.call("GET", base, token).json()["data"]}
    assert listed == {delivery_id: True, published: False}


def test_the_sixth_test_in_a_minute_is_refused(
    api: InProcess, tenant: str, receiver: Receiver
) -> None:
    endpoints = get_endpoints()
    busy, _ = endpoints.add(receiver.url(_unique("/ok")), tenant=tenant)
    other, _ = endpoints.add(receiver.url(_unique("/ok")), tenant=tenant)
    # A refused test does not use up the minute.
    refused = api.call("POST", _path(tenant, busy.id), json={"event_type": "nope"})
    assert refused.status_code == 422
    for _ in range(5):
        assert api.call("POST", _path(tenant, busy.id), json={}).status_code == 202
    sixth = api.call("POST", _path(tenant, busy.id), portal_token(tenant))
    assert sixth.status_code == 429
    assert sixth.json()["error"]["code"] == "rate_limited"
    assert "5 test events a minute" in sixth.json()["error"]["message"]
    assert 1 <= int(sixth.headers["Retry-After"]) <= 60
    # Per endpoint: another endpoint of the same tenant still gets its own.
    assert api.call("POST", _path(tenant, other.id)).status_code == 202
    listed = api.call("GET", f"/api/v1/tenants/{tenant}/deliveries").json()["data"]
    assert len(listed) == 6 and all(d["test"] for d in listed)


def test_refused_tests_write_nothing(
    api: InProcess, tenant: str, receiver: Receiver, other_event_type: str
) -> None:
    endpoints = get_endpoints()
    approved, _ = endpoints.add(receiver.url(_unique("/ok")), [APPROVED], tenant=tenant)
    every, _ = endpoints.add(receiver.url(_unique("/ok")), tenant=tenant)
    stopped, _ = endpoints.add(receiver.url(_unique("/ok")), tenant=tenant)
    endpoints.disable(stopped.id, "paused by the customer", tenant=tenant)
    typo = "screenshot_set.aproved"
    stranger = f"acct_{uuid.uuid4().hex[:10]}"
    get_tenants().add(stranger, "Another customer")
    try:
        cases: list[tuple[str, Any, str | None, int, str]] = [
            (approved.id, {"event_type": typo}, "operator", 422, "did you mean"),
            (approved.id, {"event_type": other_event_type}, "operator", 422, "does not take"),
            (every.id, {"event_type": other_event_type}, "operator", 422, "no example"),
            (approved.id, {"event_type": None}, "operator", 422, ""),
            (approved.id, {"event": APPROVED}, "operator", 422, ""),
            (approved.id, {"event_type": "x" * 5000}, "operator", 422, "…"),
            (stopped.id, {}, "operator", 409, "paused by the customer"),
            (approved.id, {}, portal_token(stranger), 404, ""),
            (approved.id, {}, None, 401, ""),
        ]
        for endpoint_id, body, token, status, said in cases:
            answer = api.call("POST", _path(tenant, endpoint_id), token, json=body)
            assert answer.status_code == status, (body, answer.text)
            assert said in answer.json()["error"]["message"], (body, answer.text)
            assert len(answer.text) < 1000
        # The stranger's own path to this tenant's endpoint is not found either.
        answer = api.call("POST", _path(stranger, approved.id), portal_token(stranger))
        assert answer.status_code == 404
    finally:
        get_tenants().delete(stranger)
    assert api.call("GET", f"/api/v1/tenants/{tenant}/deliveries").json()["data"] == []


def test_cli_and_python_api_send_a_test_event(tenant: str, receiver: Receiver) -> None:
    endpoint, _ = get_endpoints().add(receiver.url(_unique("/ok")), tenant=tenant)
    sent = invoke("endpoints", "test", endpoint.id, "--event", APPROVED, "--json")
    assert sent.returncode == 0, sent.stderr
    delivery = get_store().get(json.loads(sent.stdout)["delivery_id"], tenant)
    assert delivery.test is True and delivery.endpoint_id == endpoint.id
    assert delivery.event_id == event_example(APPROVED)["id"]  # type: ignore[index]
    assert "(test)" in "".join(invoke("show", delivery.id).stdout.split())  # however wrapped
    refused = invoke("endpoints", "test", endpoint.id, "--event", "screenshot_set.aproved")
    assert_one_line_error(refused, "event_type", "did you mean 'screenshot_set.approved'?")
    # The same from Python; another tenant's endpoint is not found.
    again = webhooks.send_test(endpoint.id)
    assert again != delivery.id and get_store().get(again, tenant).test is True
    with pytest.raises(EndpointNotFound):
        webhooks.send_test(endpoint.id, tenant="acct_someone_else")


@pytest.mark.usefixtures("worker")
def test_portal_sends_a_test_event_and_shows_the_answer_live(
    browser: Any,  # noqa: F811
    web: Web,
    tenant: str,
    receiver: Receiver,
) -> None:
    route = _unique("/status/201")
    _sign_in(browser, web, tenant)
    _css(browser, "#nav a")[1].click()  # Endpoints
    # The form offers the registered types; one ticked makes the filter.
    box = _until(browser, lambda: _css(browser, f'#event-type-choices input[value="{APPROVED}"]'))
    box[0].click()
    _css(browser, '#add-endpoint input[name="url"]')[0].send_keys(receiver.url(route))
    _css(browser, "#add-endpoint button[type=submit]")[0].click()
    row = _until(browser, lambda: _css(browser, "#endpoints tr[data-endpoint]"))[0]
    assert APPROVED in row.text
    # The type to send is offered only when there is a choice: here there is none.
    choice = row.find_element("css selector", "select.test-type")
    assert choice.get_attribute("textContent") == APPROVED and not choice.is_displayed()
    browser.execute_script("window.__stayed = true")  # gone if the page reloads
    row.find_element("css selector", "button.send-test").click()
    shown = _until(browser, lambda: _css(browser, '.test-outcome[data-status-code="201"]'))[0]
    assert "HTTP 201" in shown.text and " ms" in shown.text
    assert "status 201" in shown.find_element("css selector", "pre.test-answer").text
    assert browser.execute_script("return window.__stayed") is True
    assert len(receiver.received(route)) == 1
    assert receiver.received(route)[0].headers["webhook-test"] == "true"
    # Listed as a test.
    _css(browser, "#nav a")[0].click()
    listed = _until(browser, lambda: _css(browser, "#deliveries tr[data-delivery]"))
    assert [row.find_element("css selector", ".badge.test").text for row in listed] == ["test"]

    # The catalog page: the type, its description, schema and example.
    (catalog,) = [a for a in _css(browser, "#nav a") if a.text == "Event types"]
    catalog.click()
    section = _until(browser, lambda: _css(browser, f'#catalog [data-event-type="{APPROVED}"]'))[0]
    assert "ready for download" in section.text
    example = section.find_element("css selector", "pre.example").text
    assert json.loads(example) == event_example(APPROVED)
    schema = section.find_element("css selector", "pre.schema").get_attribute("textContent")
    assert json.loads(schema)["properties"]["type"]["const"] == APPROVED
    _no_page_errors(browser)

    # The console's endpoint table has the same button.
    _console(browser, web, f"/tenants/{tenant}/endpoints")
    row = _until(browser, lambda: _css(browser, "#endpoints tr[data-endpoint]"))[0]
    row.find_element("css selector", "button.send-test").click()
    _until(browser, lambda: _css(browser, '.test-outcome[data-status-code="201"]'))
    assert len(receiver.received(route)) == 2
    _no_page_errors(browser)
