"""The delivery task: one Celery task per delivery, one run per attempt.

Producers call ``deliver.delay(url, event)``. The task class turns that into a
stored delivery and a message that carries only the delivery id, which is also
the Celery task id, so Flower and logs never show payloads and every retry of a
delivery shares its id.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from celery import Task
from celery.exceptions import Reject
from celery.result import AsyncResult
from celery.utils.log import get_task_logger

from ._version import __version__
from .attempt import make_attempt
from .celery_app import app
from .clock import now
from .deliveries import new_delivery
from .errors import DeliveryNotFound, InvalidInput
from .models import FINAL_STATUSES, Attempt, Delivery, DeliveryStatus
from .retry import MAX_RETRIES, BackoffPolicy, RetriesExhausted
from .settings import get_settings
from .store import get_store

__all__ = ["DeliveryTask", "deliver"]

logger = get_task_logger(__name__)
USER_AGENT = f"webhooks/{__version__}"


def _producer_args(args: Any, kwargs: Any) -> tuple[Any, Any]:
    params = dict(zip(("url", "event"), args or (), strict=False))
    for name, value in (kwargs or {}).items():
        if name not in ("url", "event") or name in params:
            raise InvalidInput(name, "unexpected argument; call deliver.delay(url, event)")
        params[name] = value
    if len(args or ()) > 2:
        raise InvalidInput("args", "deliver.delay takes exactly two arguments: url, event")
    missing = [name for name in ("url", "event") if name not in params]
    if missing:
        raise InvalidInput(missing[0], "is required")
    return params["url"], params["event"]


class DeliveryTask(Task):  # type: ignore[type-arg]
    """Celery task class whose ``apply_async`` creates the delivery before publishing it."""

    max_retries = MAX_RETRIES
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True

    def apply_async(
        self,
        args: Any = None,
        kwargs: Any = None,
        task_id: str | None = None,
        *more: Any,
        **options: Any,
    ) -> AsyncResult[Any]:
        if options.get("retries"):
            # self.retry() re-publishing an existing delivery: args are already its id.
            return super().apply_async(args, kwargs, task_id, *more, **options)
        url, event = _producer_args(args, kwargs)
        due = options.get("eta")
        if due is None and options.get("countdown") is not None:
            due = now() + timedelta(seconds=float(options["countdown"]))
        delivery = new_delivery(url, event, due=due)
        try:
            return super().apply_async((delivery.id,), None, delivery.id, *more, **options)
        except BaseException:
            # Nothing half-written: a delivery whose message never left is removed.
            get_store().delete(delivery.id)
            raise


def _headers(delivery_id: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": delivery_id,
        "webhook-timestamp": str(int(time.time())),
    }


def _attempt(delivery: Delivery, body: bytes, number: int) -> Attempt:
    settings = get_settings()
    return make_attempt(
        number,
        delivery.url,
        body,
        _headers(delivery.id),
        connect_timeout=settings.connect_timeout_seconds,
        total_timeout=settings.timeout_seconds,
    )


@app.task(base=DeliveryTask, bind=True, name="webhooks.tasks.deliver")
def deliver(self: DeliveryTask, delivery_id: str) -> str:
    """Make attempt ``retries + 1`` of a delivery and decide what follows it."""
    store = get_store()
    number = self.request.retries + 1
    try:
        delivery, body = store.load(delivery_id)
    except DeliveryNotFound:
        logger.warning("delivery %s not found (expired or deleted); dropping attempt %d",
                       delivery_id, number)
        return "missing"
    if delivery.status in FINAL_STATUSES:
        logger.info("delivery %s is already %s; dropping duplicate attempt %d",
                    delivery_id, delivery.status.value, number)
        return delivery.status.value

    if any(attempt.number == number for attempt in delivery.attempts):
        # This message came back after its attempt was recorded (the retry could
        # not be published, or the worker died in between): do not send again,
        # only schedule what the record says comes next.
        logger.warning("attempt %d of %s already ran; rescheduling without sending",
                       number, delivery_id)
        due = delivery.next_attempt_at or now()
        countdown = max(0.0, (due - now()).total_seconds())
    else:
        attempt = _attempt(delivery, body, number)
        if attempt.succeeded:
            store.record_attempt(delivery_id, attempt, DeliveryStatus.DELIVERED, None)
            return DeliveryStatus.DELIVERED.value
        decision = BackoffPolicy.from_settings(get_settings()).after_failure(self.request.retries)
        if isinstance(decision, RetriesExhausted):
            store.record_attempt(delivery_id, attempt, DeliveryStatus.RETRIES_EXHAUSTED, None)
            logger.warning("delivery %s: retries exhausted after %d attempts",
                           delivery_id, decision.attempts)
            return DeliveryStatus.RETRIES_EXHAUSTED.value
        countdown = decision.countdown
        store.record_attempt(delivery_id, attempt, DeliveryStatus.RETRYING,
                             now() + timedelta(seconds=countdown))
    try:
        raise self.retry(countdown=countdown)
    except Reject as exc:
        # Celery drops the message when the retry cannot be published. Put it
        # back instead: the attempt is recorded, so the rerun only reschedules.
        raise Reject(str(exc), requeue=True) from exc
