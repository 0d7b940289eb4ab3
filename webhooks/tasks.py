"""The delivery task: one Celery task per delivery, one run per attempt.

Producers call ``deliver.delay(url, event)``. The task class turns that into a
stored delivery and a message that carries only the delivery id (and its attempt
cycle). The id is also the Celery task id and the ``webhook-id`` header, so
Flower and logs never show payloads or secrets, and every retry shares the id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from celery import Task
from celery.exceptions import Reject
from celery.result import AsyncResult

from .bulk import Message, publish_messages
from .celery_app import app
from .clock import now
from .deliveries import create_deliveries
from .errors import InvalidInput
from .events import parse_event
from .retry import BackoffPolicy, Retry
from .runner import run_attempt
from .schedule import Run, get_schedule
from .settings import get_settings
from .store import get_store
from .urls import check_url

__all__ = ["DeliveryTask", "deliver"]

logger = logging.getLogger(__name__)


def _producer_args(args: Any, kwargs: Any) -> tuple[Any, Any]:
    if len(args or ()) > 2:
        raise InvalidInput("args", "deliver.delay takes exactly two arguments: url, event")
    params = dict(zip(("url", "event"), args or (), strict=False))
    for name, value in (kwargs or {}).items():
        if name not in ("url", "event") or name in params:
            raise InvalidInput(name, "unexpected argument; call deliver.delay(url, event)")
        params[name] = value
    missing = [name for name in ("url", "event") if name not in params]
    if missing:
        raise InvalidInput(missing[0], "is required")
    return params["url"], params["event"]


class DeliveryTask(Task):  # type: ignore[type-arg]
    """Celery task class whose ``apply_async`` creates the delivery before publishing it."""

    max_retries = 14
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True

    def apply_async(self, args: Any = None, kwargs: Any = None, task_id: str | None = None,
                    *more: Any, **options: Any) -> AsyncResult[Any]:
        if options.get("retries"):
            # self.retry() re-publishing an existing delivery: args are already its id.
            countdown = options.get("countdown")
            if countdown is not None and self._policy().parks(countdown):
                # Long waits live in Redis, not in a worker's memory as ETA messages.
                # Usually the attempt's record already parked it; NX keeps that due time.
                run = Run(args[0], int((kwargs or {}).get("cycle", 0)), options["retries"])
                get_schedule().park_nx(run, time.time() + countdown)
                return AsyncResult(run.delivery_id, app=self.app)
            return super().apply_async(args, kwargs, task_id, *more, **options)
        url, raw_event = _producer_args(args, kwargs)
        checked_url, event = check_url(url), parse_event(raw_event)
        due = options.get("eta")
        if due is None and options.get("countdown") is not None:
            due = now() + timedelta(seconds=float(options["countdown"]))
        # Remembered so that parked retries are promoted to the same queue.
        queue = options.get("queue")
        (delivery,) = create_deliveries(event, [(checked_url, None)], due=due,
                                        queue=getattr(queue, "name", queue))
        try:
            return self.enqueue(delivery.id, 0, *more, **options)
        except BaseException:
            # Nothing half-written: a delivery whose message never left is removed.
            get_store().delete(delivery.id)
            raise

    @staticmethod
    def _policy() -> BackoffPolicy:
        return BackoffPolicy.from_settings(get_settings())

    def enqueue(self, delivery_id: str, cycle: int, *more: Any,
                **options: Any) -> AsyncResult[Any]:
        """Publish the message for a stored delivery: its id is the task id."""
        return super().apply_async((delivery_id,), {"cycle": cycle}, delivery_id, *more,
                                   **options)

    def enqueue_many(self, messages: Sequence[Message], queue: str | None = None) -> list[str]:
        """Publish stored deliveries' messages together, all or nothing.

        Returns every id when the batch could not be published (empty when all
        left), so the caller can undo exactly those.
        """
        try:
            if not publish_messages(self.app, self.name, messages, queue, self.ignore_result):
                self._enqueue_each(messages, queue)
        except Exception:
            logger.exception("could not publish a batch of %d deliveries", len(messages))
            return [message.delivery_id for message in messages]
        return []

    def _enqueue_each(self, messages: Sequence[Message], queue: str | None) -> None:
        # Where the one-command path does not apply: apply_async per message, pipelined.
        routing = {"queue": queue} if queue else {}
        with self.app.producer_or_acquire() as producer, producer.batch(
                max_size=2 * len(messages) + 1):
            for index, message in enumerate(messages):
                # Declaring the queue once per batch is enough.
                declare: dict[str, Any] = {} if index == 0 else {"declare": []}
                self.enqueue(message.delivery_id, message.cycle, producer=producer,
                             retries=message.retries, **routing, **declare)


@app.task(base=DeliveryTask, bind=True, name="webhooks.tasks.deliver")
def deliver(self: DeliveryTask, delivery_id: str, cycle: int = 0) -> str:
    """Make attempt ``retries + 1`` of the delivery's current cycle, then retry or finish."""
    step = run_attempt(delivery_id, cycle, self.request.retries)
    if isinstance(step, Retry):
        try:
            raise self.retry(countdown=step.countdown)
        except Reject as exc:
            # Celery drops the message when the retry cannot be published. Park the
            # retry instead; if even that fails, put this message back: the attempt
            # is recorded, so its rerun only schedules the retry.
            run = Run(delivery_id, cycle, self.request.retries + 1)
            try:
                get_schedule().park_nx(run, time.time() + step.countdown)
            except Exception:
                raise Reject(str(exc), requeue=True) from exc
        return "parked"
    return step.status
