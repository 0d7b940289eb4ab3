"""Publishing an event to every endpoint that wants it."""

from __future__ import annotations

from typing import Any

from .deliveries import create_deliveries
from .endpoints import get_endpoints
from .errors import WebhooksError
from .events import parse_event
from .store import get_store

__all__ = ["publish"]


def publish(event: Any) -> list[str]:
    """Validate ``event`` once, create a delivery per enabled endpoint whose filter
    matches, enqueue them together, and return the delivery ids.

    An invalid event raises :class:`~webhooks.InvalidEvent` and writes nothing.
    """
    parsed = parse_event(event)
    targets = [(endpoint.url, endpoint.id) for endpoint in get_endpoints().all()
               if endpoint.accepts(parsed.type)]
    deliveries = create_deliveries(parsed, targets)
    from .tasks import deliver  # the task module imports this package's producers

    unsent = deliver.enqueue_many([(delivery.id, 0) for delivery in deliveries])
    if unsent:
        get_store().delete_many(unsent)
        raise WebhooksError(f"could not enqueue {len(unsent)} of {len(deliveries)} deliveries "
                            f"of event {parsed.id}; those were discarded, the rest will be sent")
    return [delivery.id for delivery in deliveries]
