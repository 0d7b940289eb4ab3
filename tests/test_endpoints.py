"""Endpoints, fan-out, signatures, replay and endpoint health, end to end."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta

import pytest
import standardwebhooks

from tests.conftest import event, stored
from webhooks import WebhookVerificationFailed, publish, recover, redeliver, verify
from webhooks.clock import now
from webhooks.errors import EndpointDisabled
from webhooks.models import DeliveryStatus
from webhooks.storage.deliveries import get_store
from webhooks.storage.endpoints import get_endpoints

pytestmark = pytest.mark.usefixtures("worker")


def unique(path: str) -> str:
    return f"{path}/{uuid.uuid4().hex[:8]}"


def test_fan_out_respects_filters_and_skips_disabled_endpoints(
    tenant, receiver, wait_for, other_event_type
):
    store = get_endpoints()
    every, _ = store.add(receiver.url(unique("/ok")), tenant=tenant)
    approved, _ = store.add(receiver.url(unique("/ok")), ["screenshot_set.approved"], tenant=tenant)
    shipped, _ = store.add(receiver.url(unique("/ok")), [other_event_type], tenant=tenant)
    disabled, _ = store.add(receiver.url(unique("/ok")), tenant=tenant)
    store.disable(disabled.id, "test")

    ids = publish(event(id="evt_fan"), tenant=tenant)
    assert len(ids) == 2
    deliveries = [wait_for(delivery_id) for delivery_id in ids]
    assert {d.url for d in deliveries} == {every.url, approved.url}
    assert all(d.status is DeliveryStatus.DELIVERED for d in deliveries)
    for endpoint, expected in ((every, 1), (approved, 1), (shipped, 0), (disabled, 0)):
        path = endpoint.url.removeprefix(receiver.base)
        assert len(receiver.received(path)) == expected, endpoint


def test_signatures_verify_with_the_standardwebhooks_package(tenant, receiver, wait_for):
    endpoint, secret = get_endpoints().add(receiver.url(unique("/fail/1")), tenant=tenant)
    (delivery_id,) = publish(event(), tenant=tenant)
    wait_for(delivery_id)

    requests = receiver.received(endpoint.url.removeprefix(receiver.base))
    assert len(requests) == 2
    for request in requests:
        # The receiver side, written with the reference library, not ours.
        assert standardwebhooks.Webhook(secret).verify(request.body, request.headers)["id"]
        assert verify(request.body, request.headers, secret)["type"] == "screenshot_set.approved"
        assert request.headers["webhook-signature"].startswith("v1,")
    # A fresh signature each attempt: different timestamps or not, never reused blindly.
    assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"] == delivery_id


def test_rotation_signs_with_both_secrets_until_the_grace_ends(tenant, receiver, wait_for):
    store = get_endpoints()
    endpoint, old = store.add(receiver.url(unique("/ok")), tenant=tenant)
    path = endpoint.url.removeprefix(receiver.base)
    _, new = store.rotate_secret(endpoint.id, grace=timedelta(seconds=3))

    wait_for(publish(event(id="evt_during"), tenant=tenant)[0])
    (during,) = receiver.received(path)
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        standardwebhooks.Webhook(secret).verify(during.body, during.headers)
        verify(during.body, during.headers, secret)

    time.sleep(3.2)
    wait_for(publish(event(id="evt_after"), tenant=tenant)[0])
    after = receiver.received(path)[-1]
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    verify(after.body, after.headers, new)
    with pytest.raises(WebhookVerificationFailed, match="No matching signature"):
        verify(after.body, after.headers, old)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(old).verify(after.body, after.headers)


def test_verify_rejects_tampering_and_stale_timestamps(tenant, receiver, wait_for):
    endpoint, secret = get_endpoints().add(receiver.url(unique("/ok")), tenant=tenant)
    wait_for(publish(event(), tenant=tenant)[0])
    (request,) = receiver.received(endpoint.url.removeprefix(receiver.base))
    body, headers = request.body, request.headers
    verify(body, headers, secret)  # the untouched request passes

    with pytest.raises(WebhookVerificationFailed):
        event_id = json.loads(body)["id"].encode()
        verify(body.replace(event_id, event_id + b"x"), headers, secret)
    bumped = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)}
    with pytest.raises(WebhookVerificationFailed):
        verify(body, bumped, secret)

    from webhooks.signing import signature_header

    old_stamp = int(time.time()) - 600
    stale = {
        **headers,
        "webhook-timestamp": str(old_stamp),
        "webhook-signature": signature_header(headers["webhook-id"], old_stamp, body, [secret]),
    }
    with pytest.raises(WebhookVerificationFailed, match="too old"):
        verify(body, stale, secret)
    without = {k: v for k, v in headers.items() if k != "webhook-signature"}
    with pytest.raises(WebhookVerificationFailed, match="Missing"):
        verify(body, without, secret)
    with pytest.raises(WebhookVerificationFailed):
        verify(body, {**headers, "webhook-signature": "garbage"}, secret)
    _, other_secret = get_endpoints().add(receiver.url("/ok"), tenant=tenant)
    with pytest.raises(WebhookVerificationFailed) as caught:
        verify(body, headers, other_secret)
    # The error says what failed, never with what.
    for text in (str(caught.value), repr(caught.value)):
        for forbidden in (secret, other_secret, headers["webhook-signature"]):
            assert forbidden not in text


def test_redeliver_keeps_the_webhook_id_and_numbers_on(tenant, receiver, wait_for):
    endpoint, secret = get_endpoints().add(receiver.url(unique("/ok")), tenant=tenant)
    (delivery_id,) = publish(event(), tenant=tenant)
    wait_for(delivery_id)

    redeliver(delivery_id)
    delivery = wait_for(
        delivery_id, lambda d: len(d.attempts) == 2 and d.status is DeliveryStatus.DELIVERED
    )
    assert [a.number for a in delivery.attempts] == [1, 2]
    requests = receiver.received(endpoint.url.removeprefix(receiver.base))
    assert [r.headers["webhook-id"] for r in requests] == [delivery_id, delivery_id]
    for request in requests:
        verify(request.body, request.headers, secret)
    assert requests[0].body == requests[1].body


def test_410_disables_the_endpoint_then_recover_after_enable(tenant, receiver, wait_for):
    store = get_endpoints()
    endpoint, _ = store.add(receiver.url(unique("/gone-once")), tenant=tenant)
    path = endpoint.url.removeprefix(receiver.base)
    window_start = now() - timedelta(seconds=1)
    (delivery_id,) = publish(event(), tenant=tenant)
    delivery = wait_for(delivery_id)

    assert delivery.status is DeliveryStatus.RETRIES_EXHAUSTED
    assert [a.status_code for a in delivery.attempts] == [410]  # no retry after a 410
    disabled = store.get(endpoint.id)
    assert not disabled.enabled and "410" in (disabled.disabled_reason or "")
    assert "410" in (delivery.stop_reason or "")

    # Disabled: no new deliveries, and no replay until it is enabled again.
    assert publish(event(id="evt_while_disabled"), tenant=tenant) == []
    with pytest.raises(EndpointDisabled, match="410"):
        recover(endpoint.id, window_start)
    time.sleep(0.3)
    assert len(receiver.received(path)) == 1

    store.enable(endpoint.id)
    assert recover(endpoint.id, window_start) == [delivery_id]
    delivery = wait_for(delivery_id, lambda d: d.status is DeliveryStatus.DELIVERED)
    assert [(a.number, a.status_code) for a in delivery.attempts] == [(1, 410), (2, 200)]
    assert [r.headers["webhook-id"] for r in receiver.received(path)] == [delivery_id] * 2
    # Nothing older than the window, and nothing not exhausted, is recovered.
    assert recover(endpoint.id, window_start) == []


def test_sustained_failure_disables_and_stops_the_other_retries(tenant, receiver, wait_for):
    store = get_endpoints()
    endpoint, _ = store.add(receiver.url(unique("/status/500")), tenant=tenant)
    path = endpoint.url.removeprefix(receiver.base)
    (first,) = publish(event(id="evt_a"), tenant=tenant)
    time.sleep(4)  # the second delivery is mid-schedule when the first exhausts
    (second,) = publish(event(id="evt_b"), tenant=tenant)

    first_delivery = wait_for(first, timeout=60)
    assert first_delivery.status is DeliveryStatus.RETRIES_EXHAUSTED
    assert len(first_delivery.attempts) == 15
    disabled = wait_for(second, timeout=30)
    endpoint = store.get(endpoint.id)
    assert not endpoint.enabled
    assert "no 2XX since" in (endpoint.disabled_reason or "")
    assert disabled.status is DeliveryStatus.RETRIES_EXHAUSTED
    assert "endpoint disabled" in (disabled.stop_reason or "")
    attempts_then = len(disabled.attempts)
    assert attempts_then < 15
    time.sleep(1)
    assert (
        len(receiver.received(path, second))
        == attempts_then
        == len(get_store().get(second).attempts)
    )


@pytest.mark.parametrize("path", ["/retry-after/2", "/too-many/2"])
def test_retry_after_is_respected(tenant, receiver, wait_for, path):
    get_endpoints().add(receiver.url(unique(path)), tenant=tenant)
    (delivery_id,) = publish(event(), tenant=tenant)
    delivery = wait_for(delivery_id, timeout=20)

    assert delivery.status is DeliveryStatus.DELIVERED
    first, second = delivery.attempts
    assert first.status_code in (503, 429) and first.error.kind == "http_status"
    gap = (second.started_at - first.started_at).total_seconds()
    assert 2.0 <= gap < 3.5  # the base alone would have said under a millisecond


def test_no_secret_in_messages_logs_or_listings(
    tenant, receiver, wait_for, redis_client, worker_log
):
    from tests.test_cli import invoke

    endpoint, secret = get_endpoints().add(receiver.url(unique("/fail/1")), tenant=tenant)
    _, rotated = get_endpoints().rotate_secret(endpoint.id, grace=timedelta(hours=1))
    path = endpoint.url.removeprefix(receiver.base)

    # Watch every command Redis receives while the delivery runs: task messages,
    # retries, and the task events Flower would show.
    seen: list[str] = []
    monitor_ready = threading.Event()

    def watch():
        with redis_client.monitor() as monitor:
            monitor_ready.set()
            for command in monitor.listen():
                seen.append(command["command"])
                if stop.is_set():
                    break

    stop = threading.Event()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    monitor_ready.wait(5)
    (delivery_id,) = publish(event(), tenant=tenant)
    wait_for(delivery_id)
    stop.set()
    redis_client.ping()  # wakes the monitor so it sees the stop flag
    watcher.join(5)

    signatures = [
        s.split(",", 1)[1]
        for r in receiver.received(path)
        for s in r.headers["webhook-signature"].split(" ")
    ]
    assert len(signatures) == 4  # two attempts, two secrets each
    pushes = [c for c in seen if c.startswith(("LPUSH", "PUBLISH"))]
    assert any(delivery_id in c for c in pushes), "the monitor saw the task message"
    for text in pushes:
        for forbidden in (secret, rotated, secret[6:], rotated[6:], *signatures):
            assert forbidden not in text

    log = worker_log.read_text()
    assert delivery_id in log
    for forbidden in (secret, rotated, secret[6:], rotated[6:], *signatures):
        assert forbidden not in log
    listings = [
        invoke("endpoints", "list").stdout,
        invoke("endpoints", "list", "--json").stdout,
        invoke("endpoints", "show", endpoint.id, "--json").stdout,
        invoke("list", "--json", "--limit", "1000").stdout,
        invoke("show", delivery_id, "--json").stdout,
    ]
    assert endpoint.id in listings[1]
    for text in listings:
        for forbidden in (secret, rotated, secret[6:], rotated[6:]):
            assert forbidden not in text
    assert json.loads(listings[2])["secrets"][0]["secret"].endswith("…")
    for key in redis_client.scan_iter("*"):
        for forbidden in (secret, rotated, secret[6:], rotated[6:]):
            assert forbidden.encode() not in key


def test_a_deleted_endpoint_stops_its_delivery_and_frees_the_claim(
    tenant, receiver, wait_for, redis_client
):
    from webhooks.models import Run
    from webhooks.producer import enqueue

    endpoint, _ = get_endpoints().add(receiver.url(unique("/ok")), tenant=tenant)
    (delivery,) = stored(event(), [(endpoint.url, endpoint.id)], tenant=tenant)
    get_endpoints().delete(endpoint.id)
    enqueue([Run(delivery.id)])  # its message arrives after the endpoint is gone

    stopped = wait_for(delivery.id)
    assert stopped.status is DeliveryStatus.RETRIES_EXHAUSTED and stopped.attempts == []
    assert "was deleted" in (stopped.stop_reason or "")
    assert redis_client.zscore("webhooks:running", f"{delivery.id}:0:0") is None
    assert receiver.received(endpoint.url.removeprefix(receiver.base)) == []
