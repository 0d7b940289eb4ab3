"""The delivery store against a real Redis."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

import pytest

from webhooks.clock import now
from webhooks.errors import DeliveryNotFound
from webhooks.models import Attempt, AttemptError, Delivery, DeliveryStatus, Run
from webhooks.settings import Settings
from webhooks.system import System

# Delivery ids are UUIDs: the store finds nothing under an id of another format.
STORE_A, STORE_D = (str(uuid.uuid5(uuid.NAMESPACE_OID, name)) for name in ("store-a", "store-d"))


@pytest.fixture
def store(redis_client):
    store = System(client=redis_client).deliveries
    yield store


def _delivery(delivery_id: str) -> Delivery:
    moment = now()
    return Delivery(
        id=delivery_id,
        url="https://example.com/",
        event_id="evt",
        event_type="t",
        status=DeliveryStatus.PENDING,
        created_at=moment,
        updated_at=moment,
        next_attempt_at=moment,
    )


def _attempt(number: int, ok: bool) -> Attempt:
    return Attempt(
        number=number,
        started_at=now(),
        duration_ms=1.5,
        status_code=200 if ok else 500,
        error=None if ok else AttemptError(kind="http_status", message="HTTP 500"),
        response_body="r",
    )


def test_create_load_and_move_through_statuses(store, redis_client):
    store.create(_delivery(STORE_A), b'{"x": 1}')
    delivery, body = store.load(STORE_A)
    assert (delivery.status, body, delivery.attempts) == (DeliveryStatus.PENDING, b'{"x": 1}', [])

    later = now() + timedelta(seconds=5)
    store.record_attempt(Run(STORE_A, 0, 0), _attempt(1, ok=False), DeliveryStatus.RETRYING, later)
    delivery = store.get(STORE_A)
    assert delivery.status is DeliveryStatus.RETRYING
    assert delivery.next_attempt_at == later
    assert [a.number for a in delivery.attempts] == [1]

    # In exactly one status index at each step (the scripts leave only the one it was
    # in), and in the index of all deliveries.
    def memberships() -> list[DeliveryStatus]:
        return [
            s
            for s in DeliveryStatus
            if redis_client.zscore(f"webhooks:deliveries:{s.value}", STORE_A) is not None
        ]

    assert memberships() == [DeliveryStatus.RETRYING]
    store.record_attempt(Run(STORE_A, 0, 1), _attempt(2, ok=False), DeliveryStatus.RETRYING, later)
    assert memberships() == [DeliveryStatus.RETRYING]
    store.record_attempt(Run(STORE_A, 0, 2), _attempt(3, ok=True), DeliveryStatus.DELIVERED)
    delivery = store.get(STORE_A)
    assert delivery.status is DeliveryStatus.DELIVERED and delivery.next_attempt_at is None
    assert memberships() == [DeliveryStatus.DELIVERED]
    assert redis_client.zscore("webhooks:deliveries", STORE_A) is not None
    store.set_status(STORE_A, DeliveryStatus.PENDING, now())  # as a redelivery begins
    assert memberships() == [DeliveryStatus.PENDING]


def test_listing_by_status_newest_first(store):
    for name in ("store-l1", "store-l2", "store-l3"):
        store.create(_delivery(name), b"{}")
    store.set_status("store-l2", DeliveryStatus.RETRIES_EXHAUSTED)
    exhausted = [d.id for d in store.recent(DeliveryStatus.RETRIES_EXHAUSTED, limit=1000)]
    assert "store-l2" in exhausted and "store-l1" not in exhausted
    pending = [d.id for d in store.recent(DeliveryStatus.PENDING, limit=1000)]
    assert pending.index("store-l3") < pending.index("store-l1")
    assert len(store.recent(limit=2)) == 2


def test_records_expire_after_the_retention(store, redis_client):
    short = System(Settings(retention_days=100 / 86400), client=redis_client).deliveries
    short.create(_delivery("store-e"), b"{}")
    short.record_attempt(Run("store-e", 0, 0), _attempt(1, ok=True), DeliveryStatus.DELIVERED)
    assert 90 < redis_client.ttl("webhooks:delivery:store-e") <= 100
    assert 90 < redis_client.ttl("webhooks:delivery:store-e:attempts") <= 100


def test_index_entries_older_than_the_retention_are_trimmed(store, redis_client):
    redis_client.zadd("webhooks:deliveries:pending", {"store-ancient": 1.0})
    store.create(_delivery("store-new"), b"{}")
    assert redis_client.zscore("webhooks:deliveries:pending", "store-ancient") is None


def test_unknown_id_and_delete(store):
    with pytest.raises(DeliveryNotFound, match="store-missing"):
        store.get("store-missing")
    store.create(_delivery(STORE_D), b"{}")
    store.delete(STORE_D)
    with pytest.raises(DeliveryNotFound):
        store.get(STORE_D)
    assert STORE_D not in [d.id for d in store.recent(limit=10_000)]


@pytest.mark.parametrize("moments", ["one", "mixed"])
def test_a_batch_enters_the_indexes_each_with_its_own_score(store, redis_client, moments):
    """create_deliveries adds a batch to the sorted sets highest first (cheaper for Redis
    on a small set): each delivery keeps its own score, whether the batch was created
    at one moment or at several (some shared), and given in any order."""
    base, rng = now(), random.Random(24)
    batch = []
    for n in range(150):  # past the 128 members of a listpack-encoded sorted set
        delivery = _delivery(str(uuid.uuid4()))
        moment = base
        if moments == "mixed":
            moment = base + timedelta(seconds=rng.choice([0, 1, 1, 2.5, -3]) + n % 7)
        delivery = delivery.model_copy(
            update={"created_at": moment, "updated_at": moment, "next_attempt_at": moment}
        )
        batch.append(delivery)
    rng.shuffle(batch)
    try:
        store.create_many(batch, b"{}")
        expected = sorted((d.created_at.timestamp(), d.id) for d in batch)
        ids = {d.id for d in batch}
        # (Due marks are not all creation times: admission sets those of runs held back.)
        for key in ("webhooks:deliveries", "webhooks:deliveries:pending"):
            got = [
                (score, member.decode())
                for member, score in redis_client.zrange(key, 0, -1, withscores=True)
                if member.decode() in ids
            ]
            assert got == expected, key
    finally:
        store.delete_many([d.id for d in batch])
