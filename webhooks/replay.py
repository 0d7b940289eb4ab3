"""Replay: another attempt cycle for a delivery, or for an endpoint's exhausted ones."""

from __future__ import annotations

from datetime import datetime

from .bulk import Message
from .clock import now
from .endpoints import get_endpoints
from .errors import EndpointDisabled, WebhooksError
from .models import DeliveryStatus
from .store import get_store

__all__ = ["recover", "redeliver"]


def _check_endpoint(endpoint_id: str | None) -> None:
    if endpoint_id is not None:
        endpoint = get_endpoints().get(endpoint_id)
        if not endpoint.enabled:
            raise EndpointDisabled(endpoint.id, endpoint.disabled_reason)


def _restart(delivery_ids: list[str]) -> list[str]:
    from .tasks import deliver

    store = get_store()
    cycles = [store.start_cycle(delivery_id) for delivery_id in delivery_ids]
    unsent = deliver.enqueue_many([Message(delivery_id, cycle) for delivery_id, cycle
                                   in zip(delivery_ids, cycles, strict=True)])
    if unsent:
        store.stop_unfinished(unsent, "replay could not be enqueued; run it again")
        raise WebhooksError(f"could not enqueue {len(unsent)} of {len(delivery_ids)} replays")
    return delivery_ids


def redeliver(delivery_id: str) -> None:
    """Start a new attempt cycle for any delivery, whatever its status.

    The ``webhook-id`` stays the same, earlier attempts are kept, and the new
    attempts are numbered on from them. Messages of the old cycle still waiting
    in Celery are dropped when they come due.
    """
    _check_endpoint(get_store().get(delivery_id).endpoint_id)
    _restart([delivery_id])


def recover(endpoint_id: str, since: datetime, until: datetime | None = None) -> list[str]:
    """Redeliver every ``retries_exhausted`` delivery of the endpoint created in the window."""
    _check_endpoint(endpoint_id)
    ids = get_endpoints().delivery_ids(endpoint_id, since, until or now())
    statuses = get_store().statuses(ids)
    exhausted = [delivery_id for delivery_id, status in zip(ids, statuses, strict=True)
                 if status is DeliveryStatus.RETRIES_EXHAUSTED]
    return _restart(exhausted)
