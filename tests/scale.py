"""Seeding many waiting deliveries quickly, for the scale test and the benchmark."""

from __future__ import annotations

import uuid

from webhooks.clock import now
from webhooks.events import encode, parse_event
from webhooks.models import Attempt, AttemptError, Delivery, DeliveryStatus
from webhooks.schedule import Run, Schedule
from webhooks.store import DeliveryStore


def seed_waiting(store: DeliveryStore, url: str, count: int, due: float,
                 batch: int = 2000) -> list[str]:
    """``count`` deliveries whose first attempt failed and whose retry is parked until ``due``.

    The same records and schedule entries a real failed attempt leaves, written
    in bulk: going through 100,000 real attempts would take minutes.
    """
    from tests.conftest import event  # conftest sets the environment first

    parsed = parse_event(event())
    moment = now()
    failed = Attempt(number=1, started_at=moment, duration_ms=3.0, status_code=503,
                     error=AttemptError(kind="http_status", message="HTTP 503"),
                     response_body="busy").model_dump_json()
    ids: list[str] = []
    due_at = moment.fromtimestamp(due, moment.tzinfo)
    for start in range(0, count, batch):
        deliveries = [
            Delivery(id=str(uuid.uuid4()), url=url, event_id=parsed.id, event_type=parsed.type,
                     status=DeliveryStatus.RETRYING, created_at=moment, updated_at=moment,
                     next_attempt_at=due_at)
            for _ in range(min(batch, count - start))
        ]
        store.create_many(deliveries, encode(parsed))
        with store.redis.pipeline(transaction=False) as pipe:
            for delivery in deliveries:
                pipe.rpush(f"webhooks:delivery:{delivery.id}:attempts", failed)
                Schedule.park(pipe, Run(delivery.id, 0, 1), due)
            pipe.execute()
        ids += [delivery.id for delivery in deliveries]
    return ids
