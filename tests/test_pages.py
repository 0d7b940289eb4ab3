"""The portal and the console in a real headless Chromium, against a real server, Redis
and worker: the portal link, deliveries with their attempts, redeliver, endpoints and
their secret, hostile response bodies, and another tenant's pages."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import event, missing
from tests.web import Web
from webhooks import portal_token
from webhooks.dev.receiver import Receiver
from webhooks.models import DeliveryStatus
from webhooks.producer import publish
from webhooks.system import get_default, get_endpoints, get_store, get_tenants

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.usefixtures("worker")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = chromium()
    yield driver
    driver.quit()


def chromium(prefs: dict[str, Any] | None = None) -> Any:
    """A headless Chromium driven by chromedriver, with ``prefs`` (Chromium's profile
    preferences) set; the caller quits it."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        missing("no browser: install Debian's chromium and chromium-driver (.ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    if prefs:
        options.add_experimental_option("prefs", prefs)
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,860",
        "--disable-extensions",
        "--no-first-run",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture
def customers() -> Iterator[Callable[[str], str]]:
    made: list[str] = []

    def make(name: str) -> str:
        tenant_id = f"acct_{os.urandom(5).hex()}"
        get_tenants().add(tenant_id, name)
        made.append(tenant_id)
        return tenant_id

    yield make
    for tenant_id in made:
        get_tenants().delete(tenant_id)


def _until(browser: Any, check: Callable[[], Any], timeout: float = 20) -> Any:
    """Poll the page until ``check`` returns something true (stale elements retried)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
            if found:
                return found
        except (NoSuchElementException, StaleElementReferenceException):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out on {browser.current_url}; the page says:\n"
                + browser.find_element("css selector", "body").text[:2000]
            )
        time.sleep(0.1)


def _css(browser: Any, selector: str) -> list[Any]:
    return list(browser.find_elements("css selector", selector))


def _no_page_errors(browser: Any) -> None:
    """No script error so far (refused requests, such as a 401 or 404, are expected),
    and nothing rendered as "[object …]"."""
    assert "[object " not in browser.find_element("css selector", "body").text
    errors = [
        entry
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and entry.get("source") != "network"
    ]
    assert errors == [], errors


def _sign_in(browser: Any, web: Web, tenant_id: str) -> None:
    browser.get(f"{web.base}/portal#token={portal_token(tenant_id)}")
    _until(browser, lambda: _css(browser, "#deliveries"))


def _console(browser: Any, web: Web, path: str) -> None:
    """Open the console at ``path`` in a fresh browser and sign in with the operator's
    token, as its sign-in form asks."""
    browser.delete_all_cookies()
    browser.get(f"{web.base}/console{path}")
    field = _until(browser, lambda: _css(browser, "#signin input[name=token]"))[0]
    field.send_keys(web.operator_token)
    _css(browser, "#signin button")[0].click()


def test_portal_link_deliveries_redeliver_and_endpoints(
    browser: Any,
    web: Web,
    receiver: Receiver,
    customers: Callable[[str], str],
    wait_for: Callable[..., Any],
) -> None:
    tenant_id = customers("Northwind Ads")
    endpoints = get_endpoints()
    flaky, _ = endpoints.add(
        receiver.url("/fail/1/portal"), tenant=tenant_id, description="Production receiver"
    )
    endpoints.add(receiver.url("/ok/portal-archive"), tenant=tenant_id, description="Archive")
    ids = [i for _ in range(3) for i in publish(event(), tenant=tenant_id)]
    for delivery_id in ids:
        wait_for(delivery_id)
    first = ids[0]  # to the flaky endpoint: a 500, then a 200

    link = f"{web.base}/portal#token={portal_token(tenant_id)}"
    browser.get(link)
    _until(browser, lambda: len(_css(browser, "#deliveries tbody tr[data-delivery]")) == 6)
    # The token left the address bar (and the history) at once.
    assert "#" not in browser.current_url and "token" not in browser.current_url
    assert browser.current_url == f"{web.base}/portal/tenants/{tenant_id}/deliveries"
    assert _css(browser, "#tenant-name")[0].text == "Northwind Ads"
    assert browser.get_cookies()[0]["httpOnly"] is True
    assert browser.get_cookies()[0]["sameSite"] == "Strict"
    statuses = {
        row.find_element("css selector", ".badge").text
        for row in _css(browser, "#deliveries tbody tr")
    }
    assert statuses == {"delivered"}

    # Filters: the flaky endpoint's deliveries only.
    from selenium.webdriver.support.ui import Select

    Select(_css(browser, "#endpoint-filter")[0]).select_by_value(flaky.id)
    _until(
        browser,
        lambda: (
            len(_css(browser, "#deliveries tbody tr[data-delivery]")) == 3
            and "endpoint_id=" in browser.current_url
        ),
    )
    # The detail: every attempt, with its status code and response body.
    row = _css(browser, f'tr[data-delivery="{first}"] a')[0]
    row.click()
    _until(browser, lambda: len(_css(browser, "#attempts tbody tr[data-attempt]")) == 2)
    cells = [
        [cell.text for cell in tr.find_elements("css selector", "td")]
        for tr in _css(browser, "#attempts tbody tr")
    ]
    assert [c[0] for c in cells] == ["2", "1"]  # newest first
    assert cells[1][3] == "500" and cells[1][4] == "http_status"
    assert cells[0][3] == "200"
    fields = _css(browser, "dl.fields")[0].text
    assert first in fields and flaky.url in fields

    # Redeliver: the new attempt appears without reloading.
    _css(browser, "#redeliver")[0].click()
    _until(browser, lambda: len(_css(browser, "#attempts tbody tr[data-attempt]")) == 3)
    _no_page_errors(browser)
    assert wait_for(first).attempts[-1].number == 3
    assert wait_for(first).status is DeliveryStatus.DELIVERED

    # Endpoints: add one, and its secret is shown this once.
    _css(browser, "#nav a")[1].click()
    _until(browser, lambda: len(_css(browser, "#endpoints tbody tr[data-endpoint]")) == 2)
    form = _css(browser, "#add-endpoint")[0]
    form.find_element("name", "url").send_keys(receiver.url("/ok/portal-new"))
    form.find_element("name", "description").send_keys("Added in the portal")
    form.find_element("css selector", "button[type=submit]").click()
    secret = _until(browser, lambda: _css(browser, "#secret") and _css(browser, "#secret")[0].text)
    assert secret.startswith("whsec_")
    _until(browser, lambda: len(_css(browser, "#endpoints tbody tr[data-endpoint]")) == 3)
    added = [e for e in endpoints.all(tenant_id) if e.description == "Added in the portal"]
    assert [e.secrets[0].value for e in added] == [secret]
    browser.refresh()
    _until(browser, lambda: len(_css(browser, "#endpoints tbody tr[data-endpoint]")) == 3)
    assert secret not in browser.page_source  # shown once, never again
    # Disable it from the page.
    new_row = _css(browser, f'tr[data-endpoint="{added[0].id}"]')[0]
    new_row.find_element("css selector", "button.toggle").click()
    _until(browser, lambda: not endpoints.get(added[0].id).enabled)
    _no_page_errors(browser)


def test_hostile_response_bodies_never_run(
    browser: Any,
    web: Web,
    receiver: Receiver,
    customers: Callable[[str], str],
    wait_for: Callable[..., Any],
) -> None:
    tenant_id = customers("<img src=x onerror=\"window.__xss='name'\">")
    endpoint, _ = get_endpoints().add(
        receiver.url("/hostile"),
        tenant=tenant_id,
        description='<script>window.__xss="description"</script>',
    )
    markup_id = "<img/src=x/onerror=window.__xss='event'>"
    (delivery_id,) = publish(event(id=markup_id), tenant=tenant_id)
    wait_for(delivery_id, lambda d: len(d.attempts) >= 1)
    get_endpoints().disable(endpoint.id, "test over")  # no more retries

    _sign_in(browser, web, tenant_id)
    _until(browser, lambda: markup_id in browser.find_element("id", "deliveries").text)
    browser.get(f"{web.base}/portal/tenants/{tenant_id}/deliveries/{delivery_id}")
    body = _until(browser, lambda: _css(browser, "#attempts pre.body"))[0]
    assert "<script>" in body.text and "onerror" in body.text  # shown as text
    browser.get(f"{web.base}/portal/tenants/{tenant_id}/endpoints")
    _until(browser, lambda: "<script>" in browser.find_element("id", "endpoints").text)
    assert _css(browser, "#tenant-name")[0].text.startswith("<img")
    assert browser.execute_script("return window.__xss") is None
    assert _css(browser, "main script, main img, main svg") == []


def test_another_tenants_delivery_is_not_found(
    browser: Any,
    web: Web,
    receiver: Receiver,
    customers: Callable[[str], str],
    wait_for: Callable[..., Any],
) -> None:
    a, b = customers("Tenant A"), customers("Tenant B")
    get_endpoints().add(receiver.url("/ok/b-pages"), tenant=b)
    (delivery_b,) = publish(event(), tenant=b)
    wait_for(delivery_b)
    _sign_in(browser, web, a)
    for path in (
        f"/portal/tenants/{b}/deliveries/{delivery_b}",
        f"/portal/tenants/{a}/deliveries/{delivery_b}",
        f"/portal/tenants/{b}/deliveries",
        f"/portal/tenants/{b}/endpoints",
    ):
        browser.get(web.base + path)
        shown = _until(browser, lambda: _css(browser, "#not-found"))[0].text
        assert "Not found" in shown and delivery_b not in browser.find_element(
            "id", "main"
        ).text.replace(shown, "")
        assert "Tenant B" not in browser.page_source
    # The same JSON API, from inside the page with A's session, says the same.
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"fetch('/api/v1/tenants/{b}/deliveries/{delivery_b}').then(r => done(r.status));"
    )
    assert status == 404


def test_console_signs_in_with_the_operator_token(
    browser: Any, web: Web, customers: Callable[[str], str]
) -> None:
    tenant_id = customers("Console Co")
    browser.delete_all_cookies()
    browser.get(f"{web.base}/console/tenants/{tenant_id}/deliveries")
    field = _until(browser, lambda: _css(browser, "#signin input[name=token]"))[0]
    field.send_keys("not-the-token")
    _css(browser, "#signin button")[0].click()
    _until(browser, lambda: "not valid" in browser.find_element("id", "flash").text)
    field.clear()
    field.send_keys(web.operator_token)
    _css(browser, "#signin button")[0].click()
    _until(browser, lambda: _css(browser, "#deliveries") and _css(browser, "#stats"))
    switcher = _css(browser, "#tenant-switcher option:checked")[0]
    assert switcher.get_attribute("value") == tenant_id
    stats = {tile.get_attribute("data-stat") for tile in _css(browser, "#stats .stat")}
    assert {"delivered", "retries_exhausted", "overdue", "parked"} <= stats
    _no_page_errors(browser)


def _rows(browser: Any) -> set[str]:
    """The ids of the deliveries the deliveries table shows."""
    return {
        tr.get_attribute("data-delivery")
        for tr in _css(browser, "#deliveries tbody tr[data-delivery]")
    }


def _search(browser: Any, text: str, renders: bool = True) -> None:
    """Type ``text`` into the event id search, replacing what it held, and submit it;
    unless told it does not (``renders``), wait for the page to draw the new view (the
    address changes before it does)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.keys import Keys

    field = _until(browser, lambda: _css(browser, "#event-search"))[0]
    field.clear()
    field.send_keys(text + Keys.ENTER)

    def redrawn() -> bool:
        try:
            field.tag_name  # noqa: B018 (raises once the view it was in is gone)
        except StaleElementReferenceException:
            return bool(_css(browser, "#event-search"))
        return False

    if renders:
        _until(browser, redrawn)


def _query(browser: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(browser.current_url).query)


def test_portal_search_by_event_id(
    browser: Any,
    web: Web,
    receiver: Receiver,
    customers: Callable[[str], str],
    wait_for: Callable[..., Any],
) -> None:
    tenant_id, other = customers("Search Co"), customers("Other Co")
    endpoints = get_endpoints()
    ours = [endpoints.add(receiver.url(f"/ok/search-{n}"), tenant=tenant_id)[0] for n in (1, 2)]
    endpoints.add(receiver.url("/ok/search-other"), tenant=other)
    # Characters the page must encode, in its own URL and in the API's: unencoded, the
    # id would end at "&" and filter by status, or at "#".
    wanted = f"evt_{os.urandom(4).hex()}&status=retrying#x+y%2F/?é"
    found = publish(event(id=wanted), tenant=tenant_id)
    rest = [i for _ in range(2) for i in publish(event(), tenant=tenant_id)]
    theirs = publish(event(id=wanted), tenant=other)  # the same id, another tenant's
    for delivery_id in [*found, *rest, *theirs]:
        wait_for(delivery_id)
    assert len(found) == 2 and len(rest) == 4

    _sign_in(browser, web, tenant_id)
    _until(browser, lambda: len(_rows(browser)) == 6)
    field = _css(browser, "#event-search")[0]
    assert field.get_attribute("type") == "search"
    label = field.find_element("xpath", "./ancestor::label")
    assert label.text.startswith("Event id")
    assert field.find_element("xpath", "./ancestor::form").get_attribute("role") == "search"

    _search(browser, wanted)
    _until(browser, lambda: _rows(browser) == set(found))
    assert _query(browser) == {"event_id": [wanted]}
    shown = _css(browser, "#event-shown")[0].text
    assert wanted in shown and "one per endpoint" in shown
    cells = [tr.text for tr in _css(browser, "#deliveries tbody tr[data-delivery]")]
    assert all(wanted in text for text in cells)
    assert {url for url in (e.url for e in ours) if any(url in text for text in cells)} == {
        e.url for e in ours
    }
    assert _css(browser, "#event-search")[0].get_attribute("value") == wanted
    # The other filters apply to the search too.
    from selenium.webdriver.support.ui import Select

    Select(_css(browser, "#endpoint-filter")[0]).select_by_value(ours[1].id)
    to_second = {d for d in found if get_store().get(d).endpoint_id == ours[1].id}
    assert len(to_second) == 1
    _until(browser, lambda: _rows(browser) == to_second)
    assert _query(browser) == {"event_id": [wanted], "endpoint_id": [ours[1].id]}
    Select(_css(browser, "#endpoint-filter")[0]).select_by_value("")
    _until(browser, lambda: _rows(browser) == set(found))

    # Cleared: the whole list again; the history goes back to the search.
    _search(browser, "")
    _until(browser, lambda: len(_rows(browser)) == 6 and "event_id" not in browser.current_url)
    browser.back()
    _until(browser, lambda: _rows(browser) == set(found))
    # "Show all deliveries" leaves the search too.
    _css(browser, "#event-shown a")[0].click()
    _until(browser, lambda: len(_rows(browser)) == 6 and not _css(browser, "#event-shown"))
    assert _css(browser, "#event-search")[0].get_attribute("value") == ""
    _no_page_errors(browser)


def test_console_search_by_event_id(
    browser: Any,
    web: Web,
    receiver: Receiver,
    customers: Callable[[str], str],
    wait_for: Callable[..., Any],
) -> None:
    """The console's deliveries are a tenant's: the search finds that tenant's
    deliveries of the event, also when another tenant's event has the same id."""
    a, b = customers("Console A"), customers("Console B")
    for n, tenant_id in enumerate((a, a, b)):
        get_endpoints().add(receiver.url(f"/ok/console-search-{n}"), tenant=tenant_id)
    wanted = f"evt_{os.urandom(4).hex()}"
    of_a = publish(event(id=wanted), tenant=a)
    of_b = publish(event(id=wanted), tenant=b)
    others = publish(event(), tenant=a)
    for delivery_id in [*of_a, *of_b, *others]:
        wait_for(delivery_id)
    assert len(of_a) == 2 and len(of_b) == 1

    _console(browser, web, f"/tenants/{a}/deliveries")
    _until(browser, lambda: _css(browser, "#stats") and len(_rows(browser)) == 4)
    _search(browser, wanted)
    _until(browser, lambda: _rows(browser) == set(of_a))
    assert browser.current_url.startswith(f"{web.base}/console/tenants/{a}/deliveries?")
    assert _query(browser) == {"event_id": [wanted]}
    assert _css(browser, "#stats")  # still the console's page
    # Tenant B's page: B's delivery of the same id only.
    browser.get(f"{web.base}/console/tenants/{b}/deliveries")
    _until(browser, lambda: _rows(browser) == set(of_b))
    _search(browser, wanted)
    _until(browser, lambda: _rows(browser) == set(of_b) and "event_id=" in browser.current_url)
    _search(browser, f"evt_{os.urandom(4).hex()}")
    empty = _until(browser, lambda: _css(browser, "#no-event-deliveries"))[0]
    assert empty.text.startswith("No deliveries of event evt_") and _rows(browser) == set()
    _no_page_errors(browser)


def test_unknown_and_hostile_search_by_event_id(
    browser: Any,
    web: Web,
    receiver: Receiver,
    customers: Callable[[str], str],
    wait_for: Callable[..., Any],
) -> None:
    tenant_id = customers("Hostile Search")
    get_endpoints().add(receiver.url("/ok/hostile-search"), tenant=tenant_id)
    markup_id = "<img/src=x/onerror=window.__xss='search'>"  # a valid event id: no spaces
    (delivery_id,) = publish(event(id=markup_id), tenant=tenant_id)
    wait_for(delivery_id)
    _sign_in(browser, web, tenant_id)
    # Whatever markup the page might run would say so here.
    browser.execute_script("window.__xss = null; window.alert = () => { window.__xss = 'alert'; };")

    unknown = f"evt_never_{os.urandom(4).hex()}"
    _search(browser, unknown)
    empty = _until(browser, lambda: _css(browser, "#no-event-deliveries"))[0]
    assert empty.text == f"No deliveries of event {unknown}."
    assert _rows(browser) == set()

    hostile = "<img src=x onerror=alert(1)>"
    _search(browser, hostile)
    empty = _until(browser, lambda: _css(browser, "#no-event-deliveries"))[0]
    assert empty.text == f"No deliveries of event {hostile}."
    assert _css(browser, "#event-shown code")[0].text == hostile
    assert _query(browser) == {"event_id": [hostile]}

    _search(browser, markup_id)  # found: shown as text in the row and above the table
    _until(browser, lambda: _rows(browser) == {delivery_id})
    assert markup_id in _css(browser, f'tr[data-delivery="{delivery_id}"]')[0].text
    assert _css(browser, "#event-shown code")[0].text == markup_id
    assert _css(browser, "main img, main script, main svg, main iframe") == []
    assert browser.execute_script("return window.__xss") is None

    # What is shown of an id is bounded; one longer than an id can be is not searched.
    longest = "evt_" + "x" * 251
    _search(browser, longest)
    empty = _until(browser, lambda: _css(browser, "#no-event-deliveries"))[0]
    assert empty.text == f"No deliveries of event {longest[:80]}…."
    _search(browser, "y" * 256, renders=False)
    _until(browser, lambda: "at most 255 characters" in browser.find_element("id", "flash").text)
    assert _query(browser) == {"event_id": [longest]}
    browser.get(f"{web.base}/portal/tenants/{tenant_id}/deliveries?event_id={'z' * 5000}")
    empty = _until(browser, lambda: _css(browser, "#no-event-deliveries"))[0]
    assert empty.text == f"No deliveries of event {'z' * 80}…."
    assert browser.execute_script("return window.__xss") is None
    _no_page_errors(browser)


def test_a_waiting_delivery_shows_what_it_waits_behind(
    browser: Any, web: Web, receiver: Receiver, customers: Callable[[str], str]
) -> None:
    tenant_id = customers("Ordered")
    endpoint, _ = get_endpoints().add(receiver.url("/status/500/ordered"), tenant=tenant_id)
    key = "<img src=x onerror=\"window.__xss='key'\">"
    (first,) = publish(event(), tenant=tenant_id, ordering_key=key)
    (second,) = publish(event(), tenant=tenant_id, ordering_key=key)
    try:
        _sign_in(browser, web, tenant_id)
        row = f"#deliveries tr[data-delivery='{second}'] .waiting-behind"
        shown = _until(browser, lambda: _css(browser, row))[0]
        assert shown.text == f"behind {first}"
        browser.get(f"{web.base}/portal/tenants/{tenant_id}/deliveries/{second}")
        _until(browser, lambda: "Waiting behind" in browser.find_element("id", "main").text)
        text = browser.find_element("id", "main").text
        assert key in text and first in text  # the key shown as text, never as markup
        assert browser.execute_script("return window.__xss") is None
        assert _css(browser, "main img") == []
        _no_page_errors(browser)
        # The portal has no skip; the console's operator skips the stuck head.
        browser.get(f"{web.base}/portal/tenants/{tenant_id}/deliveries/{first}")
        _until(browser, lambda: _css(browser, "#redeliver"))
        assert _css(browser, "#skip") == []
        _console(browser, web, f"/tenants/{tenant_id}/deliveries/{first}")
        _until(browser, lambda: _css(browser, "#skip"))[0].click()
        _until(browser, lambda: get_store().get(second).waiting_behind is None)
        assert get_store().get(first).stop_reason == "skipped by an operator"
        _until(browser, lambda: not _css(browser, "#skip"))
    finally:
        get_endpoints().disable(endpoint.id, "test over")


def test_portal_sets_a_rate_limit_and_shows_the_pace(
    browser: Any, web: Web, customers: Callable[[str], str]
) -> None:
    tenant_id = customers("Paced Ltd")
    endpoints = get_endpoints()
    existing, _ = endpoints.add("https://example.com/paced", tenant=tenant_id)
    _sign_in(browser, web, tenant_id)
    _css(browser, "#nav a")[1].click()
    row_css = f'tr[data-endpoint="{existing.id}"]'
    _until(browser, lambda: _css(browser, row_css))
    assert "no rate limit" in _css(browser, row_css)[0].text
    # Add one with a rate limit.
    form = _css(browser, "#add-endpoint")[0]
    form.find_element("name", "url").send_keys("https://example.com/limited")
    form.find_element("name", "rate_limit").send_keys("20")
    form.find_element("css selector", "button[type=submit]").click()
    _until(browser, lambda: len(_css(browser, "#endpoints tbody tr[data-endpoint]")) == 2)
    added = [e for e in endpoints.all(tenant_id) if e.id != existing.id]
    assert [e.rate_limit for e in added] == [20]

    # Change and clear the existing one's, and a refused value changes nothing.
    def save(value: str) -> None:
        row = _css(browser, row_css)[0]
        row.find_element("css selector", "button.rate").click()
        field = _until(browser, lambda: _css(browser, ".rate-row:not([hidden]) input"))[0]
        # The server's refusal is what is tested, not the browser's own check.
        browser.execute_script("arguments[0].removeAttribute('min')", field)
        field.clear()
        if value:
            field.send_keys(value)
        _css(browser, ".rate-row:not([hidden]) button[type=submit]")[0].click()

    save("5")
    _until(browser, lambda: endpoints.get(existing.id).rate_limit == 5)
    _until(browser, lambda: "rate limit 5/s" in _css(browser, row_css)[0].text)
    save("")
    _until(browser, lambda: endpoints.get(existing.id).rate_limit is None)
    _until(browser, lambda: "no rate limit" in _css(browser, row_css)[0].text)
    save("-3")
    _until(browser, lambda: "rate_limit" in _css(browser, "#flash")[0].text)
    assert endpoints.get(existing.id).rate_limit is None
    # The pace adaptive pacing holds it at is on its row.
    system = get_default()
    system.redis.hset(
        system.keys.destination_breaker(existing.id),
        mapping={"pace_limit": "2", "pace_rate": "7.5", "paced_at": str(time.time())},
    )
    _css(browser, "#nav a")[0].click()
    _css(browser, "#nav a")[1].click()
    _until(
        browser,
        lambda: any("paced to 7.5/s, 2 in flight" in r.text for r in _css(browser, row_css)),
    )
    _no_page_errors(browser)
