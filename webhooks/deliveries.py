"""Turning a validated event and its destinations into stored ``pending`` deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from .clock import now
from .events import Event, encode
from .models import Delivery, DeliveryStatus
from .store import get_store

__all__ = ["Target", "create_deliveries"]

#: Where one delivery goes: a URL, and the endpoint it belongs to (None for a bare URL).
Target = tuple[str, str | None]


def create_deliveries(event: Event, targets: Sequence[Target],
                      due: datetime | None = None) -> list[Delivery]:
    """Write one delivery per target in a single transaction; the body is encoded once."""
    created = now()
    deliveries = [
        Delivery(
            id=str(uuid.uuid4()),
            url=url,
            endpoint_id=endpoint_id,
            event_id=event.id,
            event_type=event.type,
            status=DeliveryStatus.PENDING,
            created_at=created,
            updated_at=created,
            next_attempt_at=due or created,
        )
        for url, endpoint_id in targets
    ]
    get_store().create_many(deliveries, encode(event))
    return deliveries
