"""Turning a producer's (url, event) into a stored, validated delivery."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from .clock import now
from .events import encode, parse_event
from .models import Delivery, DeliveryStatus
from .store import get_store
from .urls import check_url

__all__ = ["new_delivery"]


def new_delivery(url: Any, event: Any, due: datetime | None = None) -> Delivery:
    """Validate both inputs, then write the delivery as ``pending``.

    Validation comes first, so a refused input leaves nothing behind.
    """
    checked_url = check_url(url)
    parsed = parse_event(event)
    created = now()
    delivery = Delivery(
        id=str(uuid.uuid4()),
        url=checked_url,
        event_id=parsed.id,
        event_type=parsed.type,
        status=DeliveryStatus.PENDING,
        created_at=created,
        updated_at=created,
        next_attempt_at=due or created,
    )
    get_store().create(delivery, encode(parsed))
    return delivery
