"""The destination guard: forbidden addresses at the door and on every attempt."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from tests.conftest import QUEUE, WORKER_ENV, event
from webhooks import guard
from webhooks.dev.receiver import Receiver
from webhooks.dev.worker import start_worker, stop_workers
from webhooks.errors import BlockedDestination, InvalidEvent, InvalidURL
from webhooks.guard import blocked_reason, check_url
from webhooks.models import DeliveryStatus
from webhooks.system import get_settings, get_store
from webhooks.worker.task import deliver

# One address from every range the guard forbids. Checked here without any
# traffic: an end-to-end test aimed at 10.x or 169.254.x would send packets off
# the machine if the guard ever broke, so those go through the same function
# the transport calls, and the end-to-end corpus below aims only at loopback.
FORBIDDEN = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "::1": "loopback",
    "10.0.0.5": "private",
    "172.16.0.1": "private",
    "172.31.255.254": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",
    "fe80::1": "link-local",
    "fd00:ec2::254": "unique local",
    "fc00::1": "unique local",
    "100.64.0.1": "carrier-grade NAT",
    "100.127.255.254": "carrier-grade NAT",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "ff02::1": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "192.0.0.8": "IETF protocol assignments",
    "198.18.0.1": "benchmarking",
    "192.0.2.1": "documentation",
    "2001:db8::1": "documentation",
    "::ffff:10.0.0.5": "IPv4-mapped form of a private",
    "::ffff:127.0.0.1": "IPv4-mapped form of a loopback",
    "::ffff:169.254.169.254": "IPv4-mapped form of a link-local",
    "::127.0.0.1": "IPv4-compatible",
    "::10.0.0.5": "IPv4-compatible",
    "2002:7f00:1::": "6to4 form of a loopback",
    "2002:a9fe:a9fe::1": "6to4 form of a link-local",
    "64:ff9b::7f00:1": "NAT64 form of a loopback",
    "64:ff9b::a00:5": "NAT64 form of a private",
    "64:ff9b:1::1": "local NAT64",
    "2001::1": "IETF protocol assignments",
    "fec0::1": "site-local",
}
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700::1111",
    "2002:808:808::1",
    "64:ff9b::808:808",
    "::ffff:8.8.8.8",
    "100.63.255.255",
    "100.128.0.0",
    "172.32.0.1",
    "11.0.0.1",
]


@pytest.mark.parametrize(("address", "reason"), FORBIDDEN.items())
def test_every_forbidden_range_is_named(address, reason):
    assert blocked_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert blocked_reason(ipaddress.ip_address(address)) is None


def test_an_address_written_out_is_checked_without_asking_the_resolver(monkeypatch):
    allowed = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    assert guard.resolve("localhost", 80, allowed).is_loopback  # a name: resolved

    def resolver(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the resolver was asked for {args[0]}")

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    assert guard.resolve("127.0.0.1", 80, allowed) == ipaddress.ip_address("127.0.0.1")
    assert guard.resolve("127.1", 80, allowed) == ipaddress.ip_address("127.0.0.1")
    assert guard.resolve("::1", 80, allowed) == ipaddress.ip_address("::1")
    for forbidden in ("10.0.0.5", "169.254.169.254", "0xa9.254.169.254", "fe80::1"):
        with pytest.raises(BlockedDestination, match="address; refused"):
            guard.resolve(forbidden, 80, allowed)
    with pytest.raises(AssertionError, match=r"asked for example\.com"):
        guard.resolve("example.com", 80, allowed)


def test_what_the_guard_keeps_of_a_check_never_outlives_its_networks_or_a_name(monkeypatch):
    # The checks are kept per address and per allowed networks; a name is resolved
    # on every attempt still, so a name that turns to an internal address is refused.
    loopback = [ipaddress.ip_network("127.0.0.0/8")]
    assert guard.resolve("127.0.0.1", 80, loopback).is_loopback
    with pytest.raises(BlockedDestination, match="loopback address; refused"):
        guard.resolve("127.0.0.1", 80, [])
    answers = iter(["93.184.215.14", "127.0.0.1"])

    def resolver(host: str, port: int, **kwargs: object) -> list[tuple[object, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    assert str(guard.resolve("rebinding.example", 80, [])) == "93.184.215.14"
    with pytest.raises(BlockedDestination, match=r"rebinding\.example \(127\.0\.0\.1\)"):
        guard.resolve("rebinding.example", 80, [])


def test_the_adapter_sends_the_path_requests_would_and_takes_no_proxies():
    import requests

    from webhooks.sending.attempt import _prepared_url
    from webhooks.sending.transport import GuardedAdapter

    adapter = GuardedAdapter([])
    for url in (
        "http://127.0.0.1:8000/hooks/a?b=c&d=%20e",
        "https://bücher.example/ä/ö?ü=1#fragment",
        "http://h.example",
    ):
        request = requests.PreparedRequest()
        request.prepare_url(url, None)
        assert _prepared_url(url) == request.url
        assert adapter.request_url(request, None) == request.path_url
    with pytest.raises(ValueError, match="takes no proxies"):
        adapter.request_url(request, {"http": "http://proxy.example:3128"})
    # A URL requests cannot prepare fails every time it is tried: nothing is kept of it.
    for _ in range(2):
        with pytest.raises(requests.exceptions.InvalidURL):
            _prepared_url("http://")


DOOR = [
    "http://127.0.0.1/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://017700000001/",
    "http://0177.0.0.1/",
    "http://localhost/",
    "http://app.localhost/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:a00:5]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://10.0.0.5/",
    "http://0xa.0.0.5/",
    "http://167772165/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://[2002:7f00:1::]/",
    "http://[64:ff9b::a00:5]/",
    "http://192.168.0.1:8080/x",
    # Percent-encoded hosts, which HTTP stacks decode before resolving.
    "http://%31%32%37.0.0.1/",
    "http://%31%32%37%2e%30%2e%30%2e%31/",
    "http://%6c%6f%63%61%6c%68%6f%73%74/",
    "http://%4C%4F%43%41%4C%48%4F%53%54:8000/",
    "http://%31%36%39.254.169.254/latest/meta-data/",
    "http://0x%37f.1/",
]


@pytest.mark.parametrize("url", DOOR)
def test_internal_literals_are_refused_at_the_door(settings_env, counts, url):
    settings_env(allowed_networks="")
    before = counts()
    with pytest.raises(InvalidURL, match="address; refused") as caught:
        deliver.apply_async((url, event()), queue=QUEUE)
    assert caught.value.field == "url"
    assert counts() == before


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pw@example.com/",
        "http://token@example.com/",
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "https://example.com/" + "a" * 2100,
        "http://exa\tmple.com/",
        "http://example.com\x00/",
    ],
)
def test_malformed_urls_are_refused(counts, url):
    before = counts()
    with pytest.raises(InvalidURL):
        deliver.apply_async((url, event()), queue=QUEUE)
    assert counts() == before


def test_https_only(settings_env, counts):
    settings_env(https_only="true")
    with pytest.raises(InvalidURL, match="scheme must be https"):
        deliver.apply_async(("http://example.com/", event()), queue=QUEUE)
    assert deliver.apply_async(("https://example.com/", event()), queue=QUEUE).id


def test_oversized_event_is_refused(settings_env, counts):
    settings_env(max_payload_bytes="1000")
    big = event()
    big["data"]["screenshot_set"]["name"] = "x" * 500
    big["data"]["screenshot_set"]["screenshots"] *= 4
    before = counts()
    with pytest.raises(InvalidEvent, match="the limit is 1,000") as caught:
        deliver.apply_async(("https://example.com/", big), queue=QUEUE)
    assert caught.value.field == "event"
    assert counts() == before


def test_default_cap_is_256_kb(counts):
    big = event()
    big["data"]["screenshot_set"]["name"] = "x" * 500
    big["data"]["screenshot_set"]["screenshots"] = [
        {
            "id": f"s{n}",
            "status": "site_unreachable",
            "ad": {"id": "a", "status": "uploaded"},
            "site_url": "https://example.com/" + "p" * 1500,
        }
        for n in range(200)
    ]
    with pytest.raises(InvalidEvent, match="the limit is 262,144"):
        deliver.apply_async(("https://example.com/", big), queue=QUEUE)


# --- end to end: a canary on 127.0.0.1, and workers with and without the allowlist ---


@pytest.fixture(scope="module")
def canary() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture(scope="module")
def guard_workers(redis_client, tmp_path_factory):
    logs = tmp_path_factory.mktemp("guard-workers")

    def env(allowed: str) -> dict[str, str]:
        return {**WORKER_ENV, "WEBHOOKS_ALLOWED_NETWORKS": allowed}

    with ThreadPoolExecutor() as starting:  # a start is mostly waiting: both at once
        workers = list(
            starting.map(
                lambda name, allowed: start_worker(
                    logs / f"{name}.log",
                    env(allowed),
                    "-Q",
                    f"guard-{name}",
                    "--concurrency=2",
                    "-n",
                    f"{name}@%h",
                ),
                ("closed", "open"),
                ("", "127.0.0.0/8"),
            )
        )
    yield
    stop_workers(workers)


def corpus(port: int) -> dict[str, bool]:
    """URL → whether it reaches the canary once 127.0.0.0/8 is allowed."""
    loopback = [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f.1",
        "0x7f000001",
        "017700000001",
        "localhost",
        "[::ffff:127.0.0.1]",
    ]
    other = ["[::1]", "[::127.0.0.1]", "[2002:7f00:1::]", "[64:ff9b::7f00:1]", "0.0.0.0"]
    urls = {f"http://{host}:{port}/canary": True for host in loopback}
    urls |= {f"http://{host}:{port}/canary": False for host in other}
    urls[f"http://127.0.0.1:{port}/redirect-private"] = False
    return urls


@pytest.mark.usefixtures("guard_workers")
def test_forbidden_destinations_never_reach_the_canary(canary, settings_env, wait_for):
    # The producer side lets everything through its door, so that the guard the
    # workers apply on every attempt is what is tested.
    settings_env(allowed_networks="0.0.0.0/0,::/0")
    urls = corpus(int(canary.base.rsplit(":", 1)[1]))

    closed = {url: deliver.apply_async((url, event()), queue="guard-closed").id for url in urls}
    for url, delivery_id in closed.items():
        delivery = wait_for(delivery_id, timeout=60)
        assert delivery.status is DeliveryStatus.RETRIES_EXHAUSTED, url
        assert len(delivery.attempts) == 15
        kinds = {attempt.error.kind for attempt in delivery.attempts}
        assert kinds == {"blocked_destination"}, (url, delivery.attempts[0].error)
    assert canary.received() == []

    opened = {url: deliver.apply_async((url, event()), queue="guard-open").id for url in urls}
    for url, delivery_id in opened.items():
        if urls[url]:
            assert wait_for(delivery_id).status is DeliveryStatus.DELIVERED, url
        else:
            delivery = wait_for(delivery_id, lambda d: len(d.attempts) >= 2)
            expected = "http_status" if "redirect" in url else "blocked_destination"
            assert delivery.attempts[0].error.kind == expected, url
    reached = {request.headers["webhook-id"] for request in canary.received("/canary")}
    assert reached == {opened[url] for url, reaches in urls.items() if reaches}
    # The redirect was answered, never followed: 10.0.0.5 was not contacted (the
    # guard would have refused it anyway), and the 302 is on record.
    assert len(canary.received("/redirect-private")) >= 1
    time.sleep(0.2)
    redirect = get_store().get(opened[f"{canary.base}/redirect-private"])
    assert redirect.attempts[0].status_code == 302


# Hosts the worker's HTTP stack (urllib3, IDNA 2008) could never send to: refused at
# the door rather than failing every attempt for a day.
NEVER_SENDABLE = [
    "http://１２７.０.０.１:8000/",  # noqa: RUF001 - fullwidth, on purpose
    "http://127。0。0。1/",
    "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/",
    "http://☃.net/",
]


@pytest.mark.parametrize("url", NEVER_SENDABLE)
def test_hosts_that_can_never_be_sent_to_are_refused_everywhere(url, counts, redis_client, tenant):
    from webhooks.system import get_endpoints

    before, endpoints_before = counts(), redis_client.zcard("webhooks:endpoints")
    with pytest.raises(InvalidURL, match=r"can never be sent to.*IDNA") as caught:
        deliver.apply_async((url, event()), queue=QUEUE)
    assert caught.value.field == "url"
    with pytest.raises(InvalidURL, match="can never be sent to"):
        get_endpoints().add(url, tenant=tenant)
    assert counts() == before and redis_client.zcard("webhooks:endpoints") == endpoints_before


def test_an_internationalised_host_is_sent_to_its_ascii_form(counts):
    from webhooks.system import get_store

    assert check_url("https://bücher.example/päth?q=ü", get_settings()) == (
        "https://xn--bcher-kva.example/päth?q=ü"
    )
    assert (
        check_url("https://BÜCHER.example:8443/", get_settings())
        == "https://xn--bcher-kva.example:8443/"
    )
    result = deliver.apply_async(("https://bücher.example/hook", event()), queue=QUEUE)
    assert get_store().get(result.id).url == "https://xn--bcher-kva.example/hook"


def test_the_guard_checks_the_normalised_host(settings_env):
    settings_env(allowed_networks="")
    with pytest.raises(InvalidURL, match="loopback"):
        check_url(
            "http://bücher.localhost/", get_settings()
        )  # xn--bcher-kva.localhost: loopback by name


def test_port_zero_and_empty_labels_are_refused():
    for url in ("http://example.com:0/", "http://.example.com/", "http://*.example.com/"):
        with pytest.raises(InvalidURL):
            check_url(url, get_settings())


def test_a_percent_encoded_host_is_stored_decoded(tenant):
    from webhooks.system import get_endpoints

    assert check_url("https://ex%61mple.COM:8443/a%20b", get_settings()) == (
        "https://example.com:8443/a%20b"
    )
    assert check_url("https://b%C3%BCcher.example/", get_settings()) == (
        "https://xn--bcher-kva.example/"
    )
    endpoint, _ = get_endpoints().add("https://%65xample.com/hook", tenant=tenant)
    assert get_endpoints().get(endpoint.id).url == "https://example.com/hook"


@pytest.mark.parametrize(
    "url",
    [
        "http://%2f%2fevil/",
        "http://exa%20mple.com/",
        "http://%ff%fe/",
        "http://a%00b.com/",
        "http://%25/",
    ],
)
def test_a_host_that_decodes_to_no_host_name_is_refused(url):
    with pytest.raises(InvalidURL, match="not a valid host name once percent-decoded"):
        check_url(url, get_settings())


def test_an_unsendable_header_value_is_never_repeated_in_the_attempt(receiver):
    """A value stored before values were checked at the door fails its attempt without
    the error quoting it (it is often the receiver's credential)."""
    from webhooks.sending.attempt import Sender

    sender = Sender(get_settings())
    for value in (" s3kr1t-lead", "s3kr1t-cjk 日本", "s3kr1t-ls\u2028"):
        outcome = sender.attempt(
            "d", 1, receiver.url("/ok/header"), b"{}", [], extra={"X-Key": value}
        )
        error = outcome.attempt.error
        assert error is not None and outcome.attempt.status_code is None
        assert error.kind == "request_error"
        assert "s3kr1t" not in error.message


class _SettingCookies(BaseHTTPRequestHandler):
    """Answers every POST 200 with a cookie, and notes the headers of each."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append(dict(self.headers.items()))
        self.send_response(200)
        self.send_header("Set-Cookie", "session=tenant-a-secret; Path=/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_cookie_a_receiver_sets_never_goes_back_with_a_later_attempt():
    # A worker thread's session serves every delivery: a cookie kept from one answer
    # would go to the host with every later attempt, whatever tenant's.
    from webhooks.sending.attempt import USER_AGENT, Sender

    server = ThreadingHTTPServer(("127.0.0.1", 0), _SettingCookies)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sender = Sender(get_settings())
        url = f"http://127.0.0.1:{server.server_address[1]}/cookies"
        for extra in ({}, {"X-Tenant": "b"}, {"Accept-Encoding": "br"}):
            assert sender.attempt("d", 1, url, b"{}", [], extra=extra).attempt.succeeded
    finally:
        server.shutdown()
        server.server_close()
    seen = _SettingCookies.seen
    assert [headers.get("Cookie") for headers in seen] == [None, None, None]
    # The rest of what goes with every attempt, as before: an endpoint's own header may
    # override the encoding asked for.
    assert [headers["Accept-Encoding"] for headers in seen] == ["identity", "identity", "br"]
    assert {(h["User-Agent"], h["Accept"], h["Connection"]) for h in seen} == {
        (USER_AGENT, "*/*", "keep-alive")
    }
    assert seen[1]["X-Tenant"] == "b"
