"""A delivery's page shows what was sent, and the activity chart matches a known mix:
a real ``webhooks serve``, worker, Redis and receiver, with the pages in headless
Chromium (the browser and helpers of tests/test_pages.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.conftest import event, keys, stored
from tests.test_pages import (
    _console,
    _css,
    _no_page_errors,
    _sign_in,
    _until,
    browser,
    customers,
)
from tests.web import Web
from webhooks.dev.receiver import Receiver
from webhooks.models import DeliveryStatus
from webhooks.producer import publish
from webhooks.system import get_endpoints, get_store

__all__ = ["browser", "customers"]  # the fixtures, used here under their own names

pytestmark = pytest.mark.usefixtures("worker")

KINDS = ("delivered_first_try", "delivered_after_retries", "failed_attempts", "exhausted")
HEADER_VALUE = "key-never-shown-5d1e0b"


def test_the_delivery_page_shows_what_was_sent(
    browser: Any,
    redis_client: redis.Redis,
    web: Web,
    receiver: Receiver,
    customers: Callable[[str], str],
    wait_for: Callable[..., Any],
) -> None:
    tenant_id = customers("Sent Co")
    path = f"/fail/1/sent-{tenant_id}"
    endpoint, secret = get_endpoints().add(
        receiver.url(path), tenant=tenant_id, headers={"X-Api-Key": HEADER_VALUE}
    )
    raw = event()
    raw["data"]["screenshot_set"]["name"] = "héllo <b>bold</b>"  # a stranger's markup
    (delivery_id,) = publish(raw, tenant=tenant_id)
    wait_for(delivery_id)
    body = get_store().load(delivery_id)[1]
    got = receiver.received(path, delivery_id)
    assert len(got) == 2  # failed once, then delivered

    _sign_in(browser, web, tenant_id)
    browser.get(f"{web.base}/portal/tenants/{tenant_id}/deliveries/{delivery_id}")
    shown = _until(browser, lambda: _css(browser, "#sent-body"))[0]
    # The same tokens as sent, only indented: the same text but for whitespace
    # (between tokens, or inside strings alike: neither side loses any).
    assert "".join(shown.text.split()) == "".join(body.decode().split())
    assert shown.text.startswith('{\n  "id": ') and json.loads(shown.text) == json.loads(body)
    # Values are never rewritten, as JSON.parse would round or shorten them.
    sent = '{"n":12345678901234567890,"x":1.10,"e":[],"s":"a\\"b, {c}: [d]"}'
    assert browser.execute_script("return pretty(arguments[0])", sent) == (
        '{\n  "n": 12345678901234567890,\n  "x": 1.10,\n  "e": [],\n  "s": "a\\"b, {c}: [d]"\n}'
    )
    assert browser.execute_script("return pretty('not json {')") == "not json {"

    headers = {
        row.get_attribute("data-header"): row.find_elements("css selector", "td")[1].text
        for row in _css(browser, "#sent-headers tbody tr")
    }
    last = got[-1].headers
    for name in ("Content-Type", "User-Agent", "webhook-id", "webhook-timestamp"):
        assert headers[name] == last[name], name
    assert headers["Content-Length"] == last["Content-Length"] == str(len(body))
    assert headers["X-Api-Key"] == "… (hidden)" and headers["webhook-signature"] == "v1,… (hidden)"
    stamps = browser.find_element("id", "attempt-timestamps").text
    assert stamps.endswith(
        ", ".join(f"#{n} {r.headers['webhook-timestamp']}" for n, r in enumerate(got, start=1))
    )
    assert browser.find_element("id", "attempts-made").text.startswith("2 of 15 attempts")
    assert _css(browser, "#no-upcoming")

    # Everything the page holds, hidden or not: no secret, no header value.
    text = browser.execute_script("return document.documentElement.textContent")
    html = browser.page_source
    for never in (HEADER_VALUE, secret, secret.removeprefix("whsec_"), last["webhook-signature"]):
        assert never not in text and never not in html
    assert "<b>bold</b>" in text  # a stranger's markup, shown as text

    # The copy button copies the exact bytes, which the signature covers.
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": web.base, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    browser.find_element("id", "copy-body").click()
    _until(browser, lambda: "copied" in browser.find_element("id", "flash").text)
    copied = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, (e) => done('failed: ' + e));"
    )
    assert copied == body.decode()

    # Before its first attempt a delivery shows every attempt still to come. Its message
    # is never sent, and out of the overdue index the worker's backstop never sends it.
    target: list[tuple[str, str | None]] = [(receiver.url(f"/ok/sent-{tenant_id}"), endpoint.id)]
    (waiting,) = stored(event(), target, tenant=tenant_id)
    redis_client.zrem(keys().due(), waiting.id)
    browser.get(f"{web.base}/portal/tenants/{tenant_id}/deliveries/{waiting.id}")
    rows = _until(browser, lambda: _css(browser, "#retry-schedule tbody tr"))
    assert [row.get_attribute("data-attempt") for row in rows] == [str(n) for n in range(1, 16)]
    assert browser.find_element("id", "attempts-made").text.startswith("0 of 15 attempts")
    _no_page_errors(browser)


def _drawn(browser: Any) -> list[dict[str, Any]]:
    """Each hour the chart draws: its data attributes and its bars' values and heights."""
    drawn: list[dict[str, Any]] = browser.execute_script(
        """
        const chart = document.getElementById('activity-chart');
        if (chart === null) return [];  // between two views
        return [...chart.querySelectorAll('g.hour')].map((g) => ({
          hour: g.dataset.hour,
          values: Object.fromEntries(arguments[0].map((k) => [k, Number(g.getAttribute(
            'data-' + k.replaceAll('_', '-')))])),
          bars: [...g.querySelectorAll('rect')].map((r) => [r.dataset.kind,
            Number(r.dataset.value), Number(r.getAttribute('height'))]),
          max: Number(chart.dataset.max),
        }));
        """,
        list(KINDS),
    )
    return drawn


def test_the_chart_matches_a_known_mix(
    browser: Any,
    web: Web,
    receiver: Receiver,
    customers: Callable[[str], str],
    wait_for: Callable[..., Any],
) -> None:
    """10 delivered on the first try, 10 after one failed attempt, 5 exhausted (each at
    an endpoint that answers 410 Gone, which disables it at once)."""
    tenant_id = customers("Chart Co")
    add = get_endpoints().add
    first = add(receiver.url(f"/ok/chart-{tenant_id}"), tenant=tenant_id)[0].id
    retried = add(receiver.url(f"/fail/1/chart-{tenant_id}"), tenant=tenant_id)[0].id
    gone = [
        add(receiver.url(f"/status/410/chart-{tenant_id}-{n}"), tenant=tenant_id)[0].id
        for n in range(5)
    ]
    ids = publish(event(), tenant=tenant_id)
    assert len(ids) == 7
    for delivery_id in ids:
        wait_for(delivery_id)
    # The five gone endpoints are disabled now: the next events go to the other two.
    for _ in range(9):
        ids += publish(event(), tenant=tenant_id)
    assert len(ids) == 7 + 18
    final = [wait_for(delivery_id) for delivery_id in ids]
    statuses = [d.status for d in final]
    assert statuses.count(DeliveryStatus.DELIVERED) == 20
    assert statuses.count(DeliveryStatus.RETRIES_EXHAUSTED) == 5
    failed = sum(not a.succeeded for d in final for a in d.attempts)
    assert failed == 15

    _sign_in(browser, web, tenant_id)
    (activity,) = [a for a in _css(browser, "#nav a") if a.text == "Activity"]
    activity.click()

    def agree() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The served answer and the drawn chart, once they show the same hours (an
        hour that ends in between moves both windows: the page redraws)."""
        served = web.call("GET", f"/api/v1/tenants/{tenant_id}/activity?window=24h").json()
        drawn = _drawn(browser)
        hours = [hour["hour"] for hour in drawn]
        return (served, drawn) if hours == [b["hour"] for b in served["buckets"]] else None

    served, drawn = _until(browser, agree)
    totals = {kind: sum(bucket[kind] for bucket in served["buckets"]) for kind in KINDS}
    mix = {
        "delivered_first_try": 10,
        "delivered_after_retries": 10,
        "failed_attempts": 15,
        "exhausted": 5,
    }
    assert totals == mix
    rates = {e["endpoint_id"]: e["success_rate"] for e in served["endpoints"]}
    assert rates == {first: 1.0, retried: 0.5, **dict.fromkeys(gone, 0.0)}
    assert len(drawn) == 24
    assert [hour["values"] for hour in drawn] == [
        {kind: b[kind] for kind in KINDS} for b in served["buckets"]
    ]
    scale = (240 - 10 - 26) / drawn[0]["max"]
    for hour in drawn:
        for kind, value, height in hour["bars"]:
            assert height == pytest.approx(value * scale), (hour["hour"], kind)
            assert value == hour["values"][kind]
    shown = {
        row.get_attribute("data-endpoint"): row.get_attribute("data-success-rate")
        for row in _css(browser, "#endpoint-rates tbody tr")
    }
    assert {e: float(r) for e, r in shown.items()} == rates
    tiles = {
        t.get_attribute("data-total"): t.find_element("css selector", "b").text
        for t in _css(browser, "#tenant-activity .stat")
    }
    assert tiles == {kind: str(count) for kind, count in mix.items()}

    browser.find_element("css selector", "#window-picker button[data-window='7d']").click()
    _until(browser, lambda: len(_drawn(browser)) == 7 * 24)
    week = _drawn(browser)
    assert {k: sum(h["values"][k] for h in week) for k in KINDS} == mix
    _no_page_errors(browser)

    # The console shows the tenant's chart, and every tenant's below it.
    _console(browser, web, f"/tenants/{tenant_id}/activity")
    _until(
        browser,
        lambda: (
            _css(browser, "#activity-chart g.hour") and _css(browser, "#all-activity-chart g.hour")
        ),
    )
    assert [hour["values"] for hour in _drawn(browser)][-24:] == [
        {kind: b[kind] for kind in KINDS} for b in served["buckets"]
    ]
    everyone = {
        t.get_attribute("data-total"): int(
            t.find_element("css selector", "b").text.replace(",", "")
        )
        for t in _css(browser, "#all-activity .stat")
    }
    assert all(everyone[kind] >= count for kind, count in mix.items())
    _no_page_errors(browser)
