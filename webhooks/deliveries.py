"""Turning a validated event and its destinations into stored ``pending`` deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from .clock import now
from .errors import InvalidEvent
from .events import Event, encode
from .models import Delivery, DeliveryStatus
from .settings import get_settings
from .store import get_store

__all__ = ["Target", "create_deliveries", "encode_checked", "new_delivery"]

#: Where one delivery goes: a URL, and the endpoint it belongs to (None for a bare URL).
Target = tuple[str, str | None]


def encode_checked(event: Event) -> bytes:
    """The event's body, refused if larger than ``WEBHOOKS_MAX_PAYLOAD_BYTES``."""
    body = encode(event)
    limit = get_settings().max_payload_bytes
    if len(body) > limit:
        raise InvalidEvent([("event", f"is {len(body):,} bytes encoded; the limit is {limit:,}")])
    return body


def new_delivery(event: Event, url: str, endpoint_id: str | None = None,
                 due: datetime | None = None, queue: str | None = None,
                 created: datetime | None = None) -> Delivery:
    created = created or now()
    return Delivery(
        id=str(uuid.uuid4()),
        url=url,
        endpoint_id=endpoint_id,
        event_id=event.id,
        event_type=event.type,
        status=DeliveryStatus.PENDING,
        created_at=created,
        updated_at=created,
        next_attempt_at=due or created,
        queue=queue,
    )


def create_deliveries(event: Event, targets: Sequence[Target],
                      due: datetime | None = None, queue: str | None = None) -> list[Delivery]:
    """Write one delivery per target in a single transaction; the body is encoded once.

    An event larger than ``WEBHOOKS_MAX_PAYLOAD_BYTES`` is refused before anything is written.
    """
    body, created = encode_checked(event), now()
    deliveries = [new_delivery(event, url, endpoint_id, due, queue, created)
                  for url, endpoint_id in targets]
    get_store().create_many(deliveries, body)
    return deliveries
