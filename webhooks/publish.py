"""Publishing an event to every endpoint that wants it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .bulk import Message
from .clock import now
from .deliveries import create_deliveries, encode_checked, new_delivery
from .endpoints import get_endpoints
from .errors import InvalidInput, WebhooksError
from .events import parse_event
from .models import Delivery
from .store import get_store
from .urls import check_url

__all__ = ["deliver_many", "publish"]


def publish(event: Any) -> list[str]:
    """Validate ``event`` once, create a delivery per enabled endpoint whose filter
    matches, enqueue them together, and return the delivery ids.

    An invalid event raises :class:`~webhooks.InvalidEvent` and writes nothing.
    """
    parsed = parse_event(event)
    targets = [(endpoint.url, endpoint.id) for endpoint in get_endpoints().all()
               if endpoint.accepts(parsed.type)]
    return _enqueue(create_deliveries(parsed, targets))


def deliver_many(items: Iterable[tuple[Any, Any]]) -> list[str]:
    """The bulk form of ``deliver.delay(url, event)``: many (url, event) pairs at once.

    Every pair is validated first; one bad pair raises :class:`~webhooks.InvalidInput`
    naming it (``[3].url``, ``[7].data.screenshot_set.id``) and nothing is written.
    Then all records go in one transaction and all messages in one pipelined batch.
    """
    deliveries, bodies = _validate(items)
    get_store().create_many(deliveries, bodies)
    return _enqueue(deliveries)


def _validate(items: Iterable[tuple[Any, Any]]) -> tuple[list[Delivery], list[bytes]]:
    deliveries, bodies = [], []
    created = now()  # one batch, one creation time
    checked_urls: dict[Any, str] = {}  # a batch usually goes to a few URLs, checked once each
    for index, (url, event) in enumerate(items):
        try:
            checked = checked_urls.get(url) if isinstance(url, str) else None
            if checked is None:
                checked = checked_urls[url] = check_url(url)
            parsed = parse_event(event)
            bodies.append(encode_checked(parsed))
        except InvalidInput as exc:
            raise InvalidInput(f"[{index}].{exc.field}", exc.problem) from None
        deliveries.append(new_delivery(parsed, checked, created=created))
    return deliveries, bodies


def _enqueue(deliveries: list[Delivery]) -> list[str]:
    from .tasks import deliver  # the task module imports this package's producers

    unsent = deliver.enqueue_many([Message(delivery.id, 0) for delivery in deliveries])
    if unsent:
        get_store().delete_many(unsent)
        raise WebhooksError(f"could not enqueue {len(unsent)} deliveries; "
                            "they were discarded, nothing of them is left")
    return [delivery.id for delivery in deliveries]
