"""The Celery task ``deliver``: one task per delivery, one run per attempt.

Producers call ``deliver.delay(url, event)``: :meth:`DeliveryTask.apply_async`
hands that to the producer (:func:`webhooks.producer.send`), which stores the
delivery and publishes a message that carries only its id and attempt cycle.
The id is also the Celery task id and the ``webhook-id`` header, so Flower and
logs never show payloads or secrets, and every retry shares the id.

Each run makes one attempt (:func:`.runner.run_attempt`) and then calls
``self.retry(countdown=...)`` as Celery tasks do, with ``max_retries=14``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from billiard.einfo import (  # type: ignore[attr-defined]  # the stubs lack the wrapper
    ExceptionInfo,
    ExceptionWithTraceback,
)
from billiard.exceptions import Terminated, WorkerLostError
from celery import Task, shared_task
from celery.exceptions import Reject
from celery.exceptions import Retry as CeleryRetry
from celery.local import Proxy
from celery.result import AsyncResult
from celery.worker.request import Request

from .. import tracing
from ..broker import messages
from ..broker.app import DELIVER
from ..clock import now
from ..errors import InvalidInput
from ..models import Run
from ..producer import Producer
from ..retry import MAX_RETRIES, RetryLater
from ..system import System, get_default
from .drain import SATURATED, drain, taken_by
from .runner import Handoff, run_attempt, schedule_retry

__all__ = ["DeliveryRequest", "DeliveryTask", "deliver"]

logger = logging.getLogger(__name__)

_PRODUCER_OPTIONS = {"countdown", "eta", "queue"}


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


class DeliveryRequest(Request):
    """The worker's view of one run in flight: when the process making the attempt is
    lost (killed, or terminated by a revoke), its claim and destination slot are let
    go at once and the run is due again, rather than held until the lease lapses."""

    def on_failure(
        self, exc_info: ExceptionInfo, send_failed_event: bool = True, return_ok: bool = False
    ) -> None:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if isinstance(exc, WorkerLostError | Terminated):
            runs = [
                Run(
                    self.id,
                    int((self.kwargs or {}).get("cycle", 0)),
                    int(self.request_dict.get("retries") or 0),
                )
            ]
            # Or the run the process took off the queue itself after this one (.drain).
            if self.worker_pid:
                runs.extend(taken_by(int(self.worker_pid)))
            for run in runs:
                try:
                    System.of(self.task.app).deliveries.abandon_attempt(run)
                except Exception as error:  # its claim lapses by itself
                    logger.warning(
                        "delivery %s: could not release the lost attempt: %s",
                        run.delivery_id,
                        error,
                    )
        super().on_failure(exc_info, send_failed_event, return_ok)


class DeliveryTask(Task):  # type: ignore[type-arg]
    """The ``deliver`` task: its producer form is ``(url, event)``; a message is one run."""

    Request = "webhooks.worker.task:DeliveryRequest"
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
        """Deliver ``(url, event)``: what ``deliver.delay(url, event)`` calls.

        Takes ``countdown`` or ``eta`` (the first attempt waits), and ``queue``.
        The delivery id is chosen here, so ``task_id`` and other Celery options are
        refused, as is anything but a URL and an event.
        """
        given = {name for name, value in options.items() if value is not None}
        if task_id is not None or any(value is not None for value in more):
            raise InvalidInput(
                "options",
                "deliver chooses its own task id and routing; "
                "it takes only countdown, eta and queue",
            )
        if unknown := sorted(given - _PRODUCER_OPTIONS):
            raise InvalidInput(
                unknown[0], "not an option of deliver; it takes countdown, eta and queue"
            )
        url, event = _producer_args(args, kwargs)
        due: datetime | None = options.get("eta")
        if due is None and options.get("countdown") is not None:
            due = now() + timedelta(seconds=float(options["countdown"]))
        queue = options.get("queue")
        delivery_id = Producer(System.of(self.app)).deliver_one(
            url, event, due=due, queue=getattr(queue, "name", queue)
        )
        return AsyncResult(delivery_id, app=self.app)

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: Exception | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> CeleryRetry:
        """Celery's retry for the run that is executing: schedule the next run, then raise
        Celery's ``Retry`` so that the worker, its events and Flower see a retry.

        ``parked=True`` says the next run is already parked in Redis (the attempt's
        record put it there), so nothing is published. Otherwise it goes out as an
        ETA message to the queue this one came from; should the broker refuse it,
        it is parked instead, and if even that fails this message is requeued: the
        attempt is on record, so its rerun only schedules the retry.
        """
        request = self.request
        retries = request.retries + 1
        limit = self.max_retries if max_retries is None else max_retries
        if limit is not None and retries > limit:
            raise self.MaxRetriesExceededError(f"delivery {request.id}: no retry after {limit}")
        wait = countdown if countdown is not None else 0.0
        due = eta or now() + timedelta(seconds=wait)
        if not options.get("parked"):
            # The task id is the delivery id.
            run = Run(str(request.id), int((request.kwargs or {}).get("cycle", 0)), retries)
            queue = (request.delivery_info or {}).get("routing_key")
            try:
                schedule_retry(System.of(self.app), run, due, queue)
            except Exception as refused:
                # The attempt is on record: this message's rerun only schedules the retry.
                raise Reject(str(refused), requeue=True) from refused
        # The stubs say numbers.Real, which a float is at run time but not to mypy.
        retry = CeleryRetry(exc=exc, when=eta or wait)  # type: ignore[arg-type]
        if throw:
            raise retry
        return retry


@shared_task(base=DeliveryTask, bind=True, name=DELIVER)
def _deliver(self: DeliveryTask, delivery_id: str, cycle: int = 0) -> str:
    """Make attempt ``retries + 1`` of the delivery's current cycle, then retry or finish;
    then take more runs off the queue while they last (:mod:`.drain`)."""
    system = System.of(self.app)
    queue = (self.request.delivery_info or {}).get("routing_key")
    handoff = None
    if system.settings.drain_runs and queue:
        releases = messages.store_list(self.app, queue, system.settings.redis_url) is not None
        handoff = Handoff(queue, self.app.conf.task_default_queue, releases=releases)
    step = run_attempt(
        system,
        delivery_id,
        cycle,
        self.request.retries,
        tracing.from_headers(self.request),
        handoff,
    )
    if isinstance(step, RetryLater):
        retry, result = self.retry(countdown=step.countdown, parked=step.parked, throw=False), None
    else:
        retry, result = None, step.result
    if handoff is not None:
        # A run that found its destination saturated leaves the queue's next runs to
        # the worker's pace (.drain).
        take = result not in SATURATED
        drain(system, self.app, queue, handoff, take=take)
    if retry is not None:
        raise retry
    assert result is not None  # a run is retried or done
    return result.value


#: The task on the default System's app: ``deliver.delay(url, event)``. Each System's
#: app has the task registered (it is shared); this names the default's.
deliver: DeliveryTask = Proxy(lambda: get_default().app.tasks[DELIVER])  # type: ignore[assignment]
