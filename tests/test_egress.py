"""WEBHOOKS_EGRESS_PROXY: every attempt through a real forward proxy (tinyproxy) on
loopback, which connects out from 127.0.0.2, so a receiver on 127.0.0.1 tells a request
that came through it from one sent directly.

Workers run with the proxy for the end-to-end checks; the proxy's own failures (a
stopped proxy, a 407, one that never answers) are also checked on one Sender in this
process, against the same real proxy and receivers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import yaml
from pydantic import ValidationError

from tests.conftest import (
    OPERATOR_TOKEN,
    QUEUE,
    WORKER_ENV,
    event,
    keys,
    missing,
    stored,
    until,
)
from tests.test_dashboard import ALERTS
from tests.test_guard import corpus
from tests.tls import make_certificate, serve_tls
from tests.web import InProcess
from webhooks.dev.forward_proxy import ForwardProxy, tinyproxy_binary
from webhooks.dev.receiver import Receiver
from webhooks.dev.worker import start_worker, stop_worker
from webhooks.models import DeliveryStatus
from webhooks.sending.attempt import Sender
from webhooks.settings import EgressProxy, Settings, bad_setting
from webhooks.system import get_default, get_endpoints, get_store, get_tenants
from webhooks.worker.runner import run_attempt
from webhooks.worker.task import deliver

#: Where tinyproxy connects out from: what a receiver sees of a request through it.
PROXY_PEER = "127.0.0.2"
USER, PASSWORD = "fleet", "s3kr1t-proxy-password"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("egress-tls"))


@pytest.fixture(scope="module")
def proxy() -> Iterator[ForwardProxy]:
    if tinyproxy_binary() is None:
        missing("tinyproxy is needed for the egress proxy: apt-get install tinyproxy")
    with ForwardProxy(credentials=(USER, PASSWORD)) as running:
        yield running


@pytest.fixture(scope="module")
def https_receiver(certificate):
    with Receiver() as receiver:
        yield serve_tls(receiver, certificate)


@pytest.fixture(scope="module")
def plain_receiver():
    with Receiver() as receiver:
        yield receiver


def _settings(proxy_url: str | None, **more: object) -> Settings:
    values: dict[str, object] = {
        "allowed_networks": "127.0.0.0/8",
        "egress_proxy": proxy_url,
        "timeout_seconds": 2,
        "connect_timeout_seconds": 1,
        **more,
    }
    return Settings(**values)  # type: ignore[arg-type]


def _without_credentials(text: str) -> None:
    assert PASSWORD not in text and "s3kr1t" not in text, text


def _dead_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return int(unused.getsockname()[1])


# --- the setting ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://proxy.internal:3128", EgressProxy("http", "proxy.internal", 3128)),
        ("https://proxy.internal", EgressProxy("https", "proxy.internal", 443)),
        ("http://10.0.0.7", EgressProxy("http", "10.0.0.7", 80)),
        ("http://[fd00::7]:8888/", EgressProxy("http", "fd00::7", 8888)),
        (
            "http://fleet:p%40ss%3Aword@proxy:3128",
            EgressProxy("http", "proxy", 3128, "fleet", "p@ss:word"),
        ),
    ],
)
def test_a_proxy_url_is_read(url, expected):
    assert _settings(url).egress == expected
    assert "p@ss" not in repr(expected) and "p@ss" not in repr(_settings(url))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("socks5://fleet:s3kr1t@proxy:1080", "http:// (or https://)"),
        ("ftp://proxy:21", "starts with ftp://"),
        ("proxy.internal:3128", "http:// (or https://)"),
        ("//fleet:s3kr1t@proxy:3128", "it has no scheme"),
        ("http://fleet:s3kr1t@proxy:99999", "port"),
        ("http://fleet:s3kr1t@proxy:0", "port"),
        ("http://fleet:s3kr1t@:3128", "names no proxy host"),
        ("http://fleet:s3kr1t@proxy:3128/path", "address only"),
        ("http://proxy:3128?user=fleet", "address only"),
    ],
)
def test_a_proxy_url_that_is_not_http_is_refused_naming_the_setting(url, problem):
    with pytest.raises(ValidationError) as caught:
        _settings(url)
    line = bad_setting(caught.value)
    assert line.startswith("WEBHOOKS_EGRESS_PROXY: ") and problem in line, line
    assert "\n" not in line
    _without_credentials(line)
    _without_credentials(str(caught.value))


@pytest.mark.slow
@pytest.mark.parametrize("url", ["socks5://fleet:s3kr1t@127.0.0.1:1080", "file:///etc/passwd"])
def test_the_worker_refuses_to_start_in_one_line_naming_the_setting(url, redis_client):
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "webhooks", "worker", "--without-mingle"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **WORKER_ENV, "WEBHOOKS_EGRESS_PROXY": url},
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("webhooks: WEBHOOKS_EGRESS_PROXY: must be the http://")
    _without_credentials(done.stderr + done.stdout)


def test_webhooks_serve_refuses_a_bad_proxy_in_one_line(redis_client):
    done = subprocess.run(
        [sys.executable, "-m", "webhooks", "serve", "--port", str(_dead_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "WEBHOOKS_EGRESS_PROXY": "socks5h://fleet:s3kr1t@127.0.0.1:1080"},
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("Error: WEBHOOKS_EGRESS_PROXY: must be the http://")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    _without_credentials(done.stderr + done.stdout)


# --- one Sender, against the real proxy --------------------------------------------


@pytest.mark.slow  # starts tinyproxy
def test_an_attempt_goes_through_the_proxy_and_keeps_its_host(proxy, plain_receiver):
    sender = Sender(_settings(proxy.url))
    url = plain_receiver.url("/ok/sender").replace("127.0.0.1", "localhost")
    outcome = sender.attempt("msg_sender", 1, url, b'{"a":1}', [])
    assert outcome.attempt.succeeded, outcome.attempt.error
    (request,) = plain_receiver.received("/ok/sender")
    assert request.peer == PROXY_PEER
    assert request.headers["Host"] == url.split("/")[2]
    assert request.body == b'{"a":1}'


@pytest.mark.slow  # starts tinyproxy
def test_every_spelling_of_an_allowed_address_goes_through_the_proxy(proxy, plain_receiver):
    # Decimal, hex, short and IPv4-mapped forms: the proxy is asked for the IPv4
    # address the guard checked, which it can reach (it connects out over IPv4).
    sender = Sender(_settings(proxy.url))
    reachable = [
        url
        for url, reaches in corpus(int(plain_receiver.base.rsplit(":", 1)[1])).items()
        if reaches
    ]
    for number, url in enumerate(reachable):
        outcome = sender.attempt(f"msg_spelling_{number}", 1, url, b"{}", [])
        assert outcome.attempt.succeeded, (url, outcome.attempt.error)
    arrived = plain_receiver.received("/canary")
    assert len(arrived) == len(reachable) and {r.peer for r in arrived} == {PROXY_PEER}


@pytest.mark.slow  # starts tinyproxy
def test_https_goes_through_the_proxy_with_the_host_name_for_the_certificate(
    proxy, https_receiver, certificate
):
    sender = Sender(_settings(proxy.url, ca_bundle=str(certificate[0])))
    outcome = sender.attempt("msg_tls", 1, https_receiver.url("/ok/tls"), b"{}", [])
    assert outcome.attempt.succeeded, outcome.attempt.error
    (request,) = https_receiver.received("/ok/tls")
    assert request.peer == PROXY_PEER
    # Through the tunnel still, a name the certificate does not carry fails as TLS:
    # the proxy's part went well, and no certificate check was skipped.
    port = https_receiver.base.rsplit(":", 1)[1]
    outcome = sender.attempt("msg_tls", 2, f"https://127.0.0.1:{port}/ok/ip", b"{}", [])
    assert outcome.attempt.error is not None and outcome.attempt.error.kind == "tls"
    assert https_receiver.received("/ok/ip") == []


@pytest.mark.slow  # starts tinyproxy
def test_a_destination_the_guard_refuses_never_reaches_the_proxy(proxy, plain_receiver):
    sender = Sender(_settings(proxy.url, allowed_networks=""))
    before = proxy.connections()
    outcome = sender.attempt("msg_guard", 1, plain_receiver.url("/ok/guarded"), b"{}", [])
    assert outcome.attempt.error is not None
    assert outcome.attempt.error.kind == "blocked_destination"
    assert plain_receiver.received("/ok/guarded") == []
    assert proxy.connections() == before


@pytest.mark.slow  # starts tinyproxy
@pytest.mark.parametrize(
    ("credentials", "status"),
    [(f"{USER}:s3kr1t-wrong@", "401 Unauthorized"), ("", "407 Proxy Authentication Required")],
)
def test_wrong_or_no_credentials_are_a_proxy_error_that_never_shows_them(
    proxy, plain_receiver, credentials, status
):
    url = f"http://{credentials}127.0.0.1:{proxy.port}"
    outcome = Sender(_settings(url)).attempt("m", 1, plain_receiver.url("/ok/auth"), b"{}", [])
    error = outcome.attempt.error
    assert error is not None and error.kind == "proxy_error", error
    assert error.message.startswith(f"the egress proxy http://127.0.0.1:{proxy.port} refused")
    assert error.message.endswith(status)
    _without_credentials(error.message)
    assert plain_receiver.received("/ok/auth") == []


def test_a_proxy_nobody_listens_on_is_a_proxy_error(plain_receiver):
    url = f"http://{USER}:{PASSWORD}@127.0.0.1:{_dead_port()}"
    outcome = Sender(_settings(url)).attempt("m", 1, plain_receiver.url("/ok/none"), b"{}", [])
    error = outcome.attempt.error
    assert error is not None and error.kind == "proxy_error", error
    assert "could not be reached" in error.message
    _without_credentials(error.message)
    assert plain_receiver.received("/ok/none") == []


def test_a_proxy_that_never_answers_connect_is_a_proxy_error_within_the_connect_timeout(
    plain_receiver,
):
    # Accepts the connection (the kernel's backlog does), never says a word.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        outcome = Sender(_settings(url, connect_timeout_seconds=0.3)).attempt(
            "m", 1, plain_receiver.url("/ok/silent"), b"{}", []
        )
        took = time.monotonic() - start
    error = outcome.attempt.error
    assert error is not None and error.kind == "proxy_error", error
    assert "did not answer CONNECT" in error.message
    assert took < 1.5
    # Counted like a direct connect timeout: most likely, the proxy is still trying.
    assert outcome.about_receiver
    assert plain_receiver.received("/ok/silent") == []


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", "refused CONNECT"),
        (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", "could not reach 127.0.0.1:"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not HTTP"),
        (b"HTTP/1.1 200 OK\r\n\r\nextra", "bytes of its own"),
        (b"", "closed the connection"),
    ],
)
def test_a_proxy_that_will_not_tunnel_is_a_proxy_error(answer, expected, plain_receiver):
    with _answering(answer) as url:
        outcome = Sender(_settings(url)).attempt("m", 1, plain_receiver.url("/ok/no"), b"{}", [])
    error = outcome.attempt.error
    assert error is not None and error.kind == "proxy_error", error
    assert expected in error.message
    # Only a proxy that tried the receiver says anything of it.
    assert outcome.about_receiver is answer.startswith(b"HTTP/1.1 5")
    assert plain_receiver.received("/ok/no") == []


@contextlib.contextmanager
def _answering(answer: bytes) -> Iterator[str]:
    """The URL of a "proxy" that answers its first CONNECT with ``answer``."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)

        def answer_once() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(answer)

        threading.Thread(target=answer_once, daemon=True).start()
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_proxy_error_leaves_the_endpoints_failure_clock_alone(
    settings_env, tenant, plain_receiver, redis_client
):
    """Our proxy being down, or refusing the tunnel, says nothing of the receiver and
    must never disable its endpoint."""

    def attempt_once(path: str) -> tuple[str, bool]:
        endpoint, _ = get_endpoints().add(plain_receiver.url(path), tenant=tenant)
        (delivery,) = stored(event(), [(plain_receiver.url(path), endpoint.id)], QUEUE, tenant)
        redis_client.zrem(keys().due(), delivery.id)  # no worker's backstop may take it
        run_attempt(get_default(), delivery.id, 0, 0)
        (attempt,) = get_default().deliveries.get(delivery.id).attempts
        assert attempt.error is not None
        return attempt.error.kind, bool(redis_client.exists(keys().endpoint_health(endpoint.id)))

    settings_env(egress_proxy=f"http://{USER}:{PASSWORD}@127.0.0.1:{_dead_port()}")
    assert attempt_once("/ok/health") == ("proxy_error", False)
    assert plain_receiver.received("/ok/health") == []
    # It starts when the proxy tried the receiver and could not reach it (a 5XX to
    # CONNECT): a dead receiver behind the proxy is still disabled in time.
    with _answering(b"HTTP/1.1 503 Service Unavailable\r\n\r\n") as url:
        settings_env(egress_proxy=url)
        assert attempt_once("/ok/health-unreached") == ("proxy_error", True)
    # And on a receiver's own failure, as ever.
    settings_env(egress_proxy="")
    assert attempt_once("/status/500/health") == ("http_status", True)


# --- an https:// proxy: TLS with the proxy, and TLS with the receiver inside it ---------


class TLSFront:
    """TLS on 127.0.0.1 in front of the (plain) proxy, with the certificate for
    ``localhost``: an https:// proxy, as far as the worker can tell."""

    def __init__(self, upstream: int, certificate: tuple[object, object]) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(*certificate)  # type: ignore[arg-type]
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed: the test is over
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.ExitStack() as both:
            both.enter_context(client)
            try:
                tls = both.enter_context(self.context.wrap_socket(client, server_side=True))
            except (ssl.SSLError, OSError):  # a client that does not trust us hangs up
                return
            upstream = both.enter_context(socket.create_connection(("127.0.0.1", self.upstream)))
            back = threading.Thread(target=self._pump, args=(upstream, tls), daemon=True)
            back.start()
            self._pump(tls, upstream)
            back.join(5)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        for end in (sink, source):
            with contextlib.suppress(OSError):
                socket.socket.shutdown(end, socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def https_proxy(proxy, certificate) -> Iterator[str]:
    front = TLSFront(proxy.port, certificate)
    yield f"https://{USER}:{PASSWORD}@localhost:{front.port}"
    front.close()


@pytest.mark.slow  # starts tinyproxy
def test_an_https_proxy_carries_http_and_https_attempts(
    https_proxy, certificate, plain_receiver, https_receiver
):
    sender = Sender(_settings(https_proxy, ca_bundle=str(certificate[0])))
    for receiver in (plain_receiver, https_receiver):
        outcome = sender.attempt("m", 1, receiver.url("/ok/tls-proxy"), b'{"n":1}', [])
        assert outcome.attempt.succeeded, outcome.attempt.error
        (request,) = receiver.received("/ok/tls-proxy")
        assert request.peer == PROXY_PEER and request.body == b'{"n":1}'
    # Kept alive: a second attempt through the same tunnels.
    for receiver in (plain_receiver, https_receiver):
        assert sender.attempt("m", 2, receiver.url("/ok/tls-proxy"), b"{}", []).attempt.succeeded


@pytest.mark.slow  # starts tinyproxy
def test_the_deadline_ends_an_attempt_inside_tls_inside_tls(
    https_proxy, certificate, https_receiver
):
    # Headers a byte a second: every read succeeds in time, so only the watchdog,
    # shutting the socket under both TLS layers, ends the attempt.
    sender = Sender(_settings(https_proxy, ca_bundle=str(certificate[0]), timeout_seconds=0.8))
    start = time.monotonic()
    outcome = sender.attempt("msg_slow", 1, https_receiver.url("/slow-headers-once"), b"{}", [])
    assert time.monotonic() - start < 2
    error = outcome.attempt.error
    assert error is not None and error.kind == "timeout", error
    assert outcome.attempt.status_code is None


@pytest.mark.slow  # starts tinyproxy
def test_an_https_proxy_whose_certificate_is_not_trusted_is_a_proxy_error(
    https_proxy, plain_receiver
):
    outcome = Sender(_settings(https_proxy)).attempt(
        "m", 1, plain_receiver.url("/ok/untrusted-proxy"), b"{}", []
    )
    error = outcome.attempt.error
    assert error is not None and error.kind == "proxy_error", error
    assert error.message.startswith("TLS with the egress proxy https://localhost:")
    assert "certificate verify failed" in error.message
    _without_credentials(error.message)
    assert plain_receiver.received("/ok/untrusted-proxy") == []


# --- workers with the proxy -----------------------------------------------------------


@pytest.fixture(scope="module")
def egress_worker(redis_client, proxy, certificate, tmp_path_factory):
    logs = tmp_path_factory.mktemp("egress-worker")
    env = {
        **WORKER_ENV,
        "WEBHOOKS_EGRESS_PROXY": proxy.url,
        "WEBHOOKS_CA_BUNDLE": str(certificate[0]),
    }
    worker = start_worker(logs / "worker.log", env, "-Q", "egress", "--concurrency=4")
    yield logs / "worker.log"
    stop_worker(worker)


@pytest.fixture(scope="module")
def closed_egress_worker(redis_client, proxy, tmp_path_factory):
    """A worker with the proxy whose guard allows nothing on loopback."""
    env = {**WORKER_ENV, "WEBHOOKS_EGRESS_PROXY": proxy.url, "WEBHOOKS_ALLOWED_NETWORKS": ""}
    logs = tmp_path_factory.mktemp("egress-closed")
    worker = start_worker(
        logs / "worker.log", env, "-Q", "egress-closed", "--concurrency=2", "-n", "closed@%h"
    )
    yield
    stop_worker(worker)


@pytest.mark.slow
def test_every_attempt_arrives_from_the_proxy(
    egress_worker, plain_receiver, https_receiver, wait_for
):
    urls = [plain_receiver.url(f"/ok/{n}") for n in range(10)]
    urls += [https_receiver.url(f"/ok/{n}") for n in range(5)]
    urls += [plain_receiver.url("/fail/2"), https_receiver.url("/fail/2")]  # retried twice
    sent = [deliver.apply_async((url, event()), queue="egress").id for url in urls]
    for delivery_id in sent:
        assert wait_for(delivery_id).status is DeliveryStatus.DELIVERED
    requests = [r for r in plain_receiver.received() + https_receiver.received()]
    ours = [r for r in requests if r.headers.get("webhook-id") in sent]
    assert len(ours) == 15 + 3 + 3
    assert {r.peer for r in ours} == {PROXY_PEER}
    _without_credentials(egress_worker.read_text())


@pytest.mark.slow
def test_a_destination_the_guard_refuses_is_refused_with_nothing_at_the_canary(
    closed_egress_worker, proxy, settings_env, wait_for
):
    with Receiver() as canary:
        # The producer lets every URL through its door, so that the worker's guard is
        # what is tested.
        settings_env(allowed_networks="0.0.0.0/0,::/0")
        urls = [url for url in corpus(int(canary.base.rsplit(":", 1)[1])) if "canary" in url]
        before = proxy.connections()
        sent = {url: deliver.apply_async((url, event()), queue="egress-closed").id for url in urls}
        for url, delivery_id in sent.items():
            delivery = wait_for(delivery_id, lambda d: len(d.attempts) >= 2)
            assert {a.error.kind for a in delivery.attempts if a.error} == {
                "blocked_destination"
            }, url
        assert canary.received() == []
        # Refused before the proxy was asked anything: no CONNECT to any of them.
        assert proxy.connections() == before


@pytest.mark.slow
def test_a_stopped_proxy_gives_proxy_error_and_nothing_goes_out_directly(
    egress_worker, proxy, plain_receiver, wait_for
):
    proxy.stop()
    try:
        delivery_id = deliver.apply_async(
            (plain_receiver.url("/ok/stopped"), event()), queue="egress"
        ).id
        delivery = wait_for(delivery_id, lambda d: len(d.attempts) >= 3)
        assert {a.error.kind for a in delivery.attempts if a.error} == {"proxy_error"}
        assert all(f"127.0.0.1:{proxy.port}" in a.error.message for a in delivery.attempts)
        for attempt in delivery.attempts:
            _without_credentials(attempt.error.message)
        assert plain_receiver.received("/ok/stopped") == []
    finally:
        proxy.start()
    # Back, the retries go out through it.
    delivered = wait_for(delivery_id)
    assert delivered.status is DeliveryStatus.DELIVERED, delivered.attempts[-1]
    (request,) = plain_receiver.received("/ok/stopped")
    assert request.peer == PROXY_PEER


@pytest.mark.slow  # starts tinyproxy
def test_the_test_proxy_counts_connections(proxy):
    before = proxy.connections()
    socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
    until(lambda: proxy.connections() > before, 5, "tinyproxy logged no connection")


@pytest.mark.slow
def test_a_test_event_from_the_api_goes_through_the_proxy(
    proxy, plain_receiver, settings_env, redis_client, tmp_path, wait_for
):
    """The API only enqueues a test event; the worker sends it, through the proxy. A
    deployment of its own (key prefix) so that no other worker of this lane takes it."""
    prefix = "egress-test-events"
    env = {**WORKER_ENV, "WEBHOOKS_EGRESS_PROXY": proxy.url, "WEBHOOKS_KEY_PREFIX": prefix}
    worker = start_worker(tmp_path / "worker.log", env, "--concurrency=1")
    try:
        settings_env(key_prefix=prefix)
        tenant = "acct_egress"
        get_tenants().add(tenant, "Behind a firewall")
        endpoint, _ = get_endpoints().add(plain_receiver.url("/ok/test-event"), tenant=tenant)
        api = InProcess(get_default(), OPERATOR_TOKEN)
        answer = api.call("POST", f"/api/v1/tenants/{tenant}/endpoints/{endpoint.id}/test")
        assert answer.status_code == 202, answer.text
        delivery_id = answer.json()["delivery_id"]
        assert wait_for(delivery_id).status is DeliveryStatus.DELIVERED
        (request,) = plain_receiver.received("/ok/test-event")
        assert request.headers["webhook-test"] == "true" and request.peer == PROXY_PEER
        get_store().delete_many([delivery_id])
        get_tenants().delete(tenant)
    finally:
        stop_worker(worker)


def test_the_proxy_alert_fires_when_most_attempts_fail_at_the_proxy_only(tmp_path):
    """promtool's unit test of WebhooksEgressProxyFailing, one sample a minute: a proxy
    down from minute 10 fires it; receivers behind a working proxy that cannot reach
    10 % of them (proxy_error too, a 5XX to CONNECT) never do."""
    promtool = shutil.which("promtool")
    if promtool is None:
        missing("promtool is not installed (Debian's prometheus; .ci/run installs it)")

    def series(kind: str, per_minute: list[float]) -> dict[str, str]:
        total, values = 0.0, []
        for count in per_minute:
            values.append(f"{total:g}")
            total += count
        outcome = "succeeded" if kind == "none" else "failed"
        return {
            "series": f'webhooks_attempts_total{{instance="w1",outcome="{outcome}",'
            f'error_kind="{kind}",status_class="none"}}',
            "values": " ".join(values),
        }

    labels = 'alertname="WebhooksEgressProxyFailing",alertstate="firing"'

    def case(ok: list[float], failed: list[float], firing: list[int], quiet: list[int]):
        return {
            "interval": "1m",
            "input_series": [series("none", ok), series("proxy_error", failed)],
            "promql_expr_test": [
                {
                    "expr": f"ALERTS{{{labels}}}",
                    "eval_time": f"{minute}m",
                    "exp_samples": [
                        {"labels": f'ALERTS{{{labels},severity="critical"}}', "value": 1}
                    ]
                    if minute in firing
                    else [],
                }
                for minute in sorted([*firing, *quiet])
            ],
        }

    minutes = range(40)
    down = case(
        [600.0 if m < 10 else 0.0 for m in minutes],
        [0.0 if m < 10 else 600.0 for m in minutes],
        firing=[20, 30],
        quiet=[5, 12],
    )
    some_unreachable = case([540.0] * 40, [60.0] * 40, firing=[], quiet=[10, 20, 30])
    spec = tmp_path / "egress_alert_test.yml"
    spec.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(ALERTS)],
                "evaluation_interval": "1m",
                "tests": [down, some_unreachable],
            }
        )
    )
    done = subprocess.run(
        [promtool, "test", "rules", str(spec)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
