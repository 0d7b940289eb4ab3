"""Telling people about failures, once the record they speak of is written: the signals
of :mod:`webhooks.signals` and, with ``WEBHOOKS_OPERATIONAL_URL``, operational
webhooks, which are deliveries like any other.

Nothing here breaks a delivery: a receiver that raises is logged by Celery's
signal, and any other failure (the record gone, Redis away) is logged here. Only
when someone listens is anything read. Operational webhooks announce nothing of
their own (the runner never calls this for them), so they cannot recurse.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.utils.dispatch import Signal

from ..clock import isoformat
from ..models import Delivery, Endpoint
from ..producer import notify
from ..settings import get_settings
from ..signals import delivery_exhausted, delivery_recovered, endpoint_disabled
from ..storage.deliveries import get_store
from ..storage.endpoints import get_endpoints

__all__ = ["disabled", "exhausted", "recovered"]

logger = logging.getLogger(__name__)


def _listened(signal: Signal) -> bool:
    return bool(signal.receivers) or bool(get_settings().operational_url)


def _delivery_data(delivery: Delivery) -> dict[str, Any]:
    last = delivery.attempts[-1] if delivery.attempts else None
    return {
        "delivery_id": delivery.id,
        "tenant_id": delivery.tenant_id,
        "endpoint_id": delivery.endpoint_id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "status": delivery.status.value,
        "attempts": len(delivery.attempts),
        "last_attempt": None
        if last is None
        else {
            "number": last.number,
            "started_at": isoformat(last.started_at),
            "status_code": last.status_code,
            "error_kind": last.error.kind.value if last.error else None,
        },
    }


def _send(kind: str, subject: str, data: dict[str, Any]) -> None:
    url = get_settings().operational_url
    if url:
        notify(url, kind, subject, data)


def exhausted(delivery_id: str) -> None:
    """The delivery's retries ran out (or its endpoint was disabled by its attempt)."""
    if not _listened(delivery_exhausted):
        return
    try:
        delivery = get_store().get(delivery_id)
        delivery_exhausted.send(sender=__name__, delivery=delivery)
        _send(
            "delivery.exhausted",
            f"{delivery.id}\n{len(delivery.attempts)}",
            _delivery_data(delivery),
        )
    except Exception:
        logger.exception("delivery %s: could not announce that it was exhausted", delivery_id)


def recovered(delivery_id: str) -> None:
    """Delivered: announced when the attempt before this one had failed."""
    if not _listened(delivery_recovered):
        return
    try:
        delivery = get_store().get(delivery_id)
        if len(delivery.attempts) < 2 or delivery.attempts[-2].succeeded:
            return
        delivery_recovered.send(sender=__name__, delivery=delivery)
        _send(
            "delivery.recovered",
            f"{delivery.id}\n{len(delivery.attempts)}",
            _delivery_data(delivery),
        )
    except Exception:
        logger.exception("delivery %s: could not announce its recovery", delivery_id)


def disabled(endpoint_id: str, reason: str) -> None:
    """A worker disabled the endpoint: ``reason`` is gone (a 410) or failing."""
    if not _listened(endpoint_disabled):
        return
    try:
        endpoint: Endpoint = get_endpoints().get(endpoint_id)
        endpoint_disabled.send(sender=__name__, endpoint=endpoint, reason=reason)
        _send(
            "endpoint.disabled",
            f"{endpoint.id}\n{endpoint.disabled_at}",
            {
                "endpoint_id": endpoint.id,
                "tenant_id": endpoint.tenant_id,
                "reason": reason,
                "message": endpoint.disabled_reason,
                "disabled_at": isoformat(endpoint.disabled_at) if endpoint.disabled_at else None,
            },
        )
    except Exception:
        logger.exception("endpoint %s: could not announce that it was disabled", endpoint_id)
