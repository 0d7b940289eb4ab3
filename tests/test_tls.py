"""HTTPS through the pinned adapter: the certificate is checked against the host name."""

from __future__ import annotations

import pytest

from tests.conftest import WORKER_ENV, event
from tests.tls import make_certificate, serve_tls
from webhooks.dev.receiver import Receiver
from webhooks.dev.worker import start_worker, stop_worker
from webhooks.models import DeliveryStatus
from webhooks.worker.task import deliver


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https_receiver(certificate):
    with Receiver() as receiver:
        yield serve_tls(receiver, certificate)


@pytest.fixture(scope="module")
def tls_worker(redis_client, certificate, tmp_path_factory):
    env = {**WORKER_ENV, "WEBHOOKS_CA_BUNDLE": str(certificate[0])}
    worker = start_worker(
        tmp_path_factory.mktemp("tls-worker") / "worker.log",
        env,
        "-Q",
        "tls",
        "--concurrency=2",
        "-n",
        "tls@%h",
    )
    yield
    stop_worker(worker)


@pytest.mark.usefixtures("tls_worker")
def test_https_to_the_name_on_the_certificate_is_delivered(https_receiver, wait_for):
    # localhost resolves to 127.0.0.1, where the connection is pinned; the
    # certificate and SNI still use the name.
    result = deliver.apply_async((https_receiver.url("/ok"), event()), queue="tls")
    delivery = wait_for(result.id)
    assert delivery.status is DeliveryStatus.DELIVERED, delivery.attempts[0]
    (request,) = https_receiver.received("/ok", result.id)
    assert request.headers["Host"] == https_receiver.base.removeprefix("https://")


@pytest.mark.usefixtures("tls_worker")
def test_a_certificate_for_another_name_fails_as_tls(https_receiver, wait_for):
    port = https_receiver.base.rsplit(":", 1)[1]
    result = deliver.apply_async((f"https://127.0.0.1:{port}/ok", event()), queue="tls")
    delivery = wait_for(result.id, lambda d: len(d.attempts) >= 1)
    assert delivery.attempts[0].error.kind == "tls"
    assert "127.0.0.1" in delivery.attempts[0].error.message or "match" in (
        delivery.attempts[0].error.message
    )
    assert https_receiver.received("/ok", result.id) == []


def test_untrusted_certificate_fails_as_tls(https_receiver, worker, wait_for):
    # The main worker has no CA bundle: a self-signed certificate is refused.
    result = deliver.delay(https_receiver.url("/ok"), event())
    delivery = wait_for(result.id, lambda d: len(d.attempts) >= 1)
    assert delivery.attempts[0].error.kind == "tls"
    assert "certificate" in delivery.attempts[0].error.message.lower()
