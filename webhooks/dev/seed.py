"""Seeding many waiting deliveries quickly, for the scale test and the benchmark."""

from __future__ import annotations

import uuid

from ..clock import at, now
from ..events import Event, encode
from ..models import Attempt, AttemptError, Delivery, DeliveryStatus, ErrorKind, Run
from ..storage.deliveries import DeliveryStore
from ..storage.schedule import Schedule

__all__ = ["seed_waiting"]


def seed_waiting(
    store: DeliveryStore,
    schedule: Schedule,
    event: Event,
    url: str,
    count: int,
    due: float,
    batch: int = 2000,
) -> list[str]:
    """``count`` deliveries whose first attempt failed and whose retry is parked until ``due``.

    The same records and schedule entries a real failed attempt leaves, written
    in bulk: going through 100,000 real attempts would take minutes.
    """
    moment = now()
    failed = Attempt(
        number=1,
        started_at=moment,
        duration_ms=3.0,
        status_code=503,
        error=AttemptError(kind=ErrorKind.HTTP_STATUS, message="HTTP 503"),
        response_body="busy",
    )
    ids: list[str] = []
    for start in range(0, count, batch):
        deliveries = [
            Delivery(
                id=str(uuid.uuid4()),
                url=url,
                event_id=event.id,
                event_type=event.type,
                status=DeliveryStatus.RETRYING,
                created_at=moment,
                updated_at=moment,
                next_attempt_at=at(due),
            )
            for _ in range(min(batch, count - start))
        ]
        store.create_many(deliveries, encode(event))
        store.add_attempts({delivery.id: failed for delivery in deliveries})
        schedule.park_nx([Run(delivery.id, 0, 1) for delivery in deliveries], due)
        ids += [delivery.id for delivery in deliveries]
    return ids
