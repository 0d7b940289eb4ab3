"""One run of the delivery task: make the attempt that is due, decide what follows it.

Kept apart from Celery so the task body stays a few lines: the task turns the
policy's :class:`~webhooks.retry.Retry` into ``self.retry(countdown=...)`` and
:class:`Done` into a return.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

from . import health, isolation
from ._version import __version__
from .attempt import Outcome, make_attempt
from .clock import now
from .endpoints import Endpoint, get_endpoints
from .isolation import destination, get_gate
from .models import Delivery, DeliveryStatus
from .retry import BackoffPolicy, RetriesExhausted, Retry
from .schedule import Run, get_schedule
from .settings import get_settings
from .signing import signature_header
from .store import Claim, get_store

__all__ = ["USER_AGENT", "Done", "run_attempt"]

logger = logging.getLogger(__name__)
USER_AGENT = f"webhooks/{__version__}"


@dataclass(frozen=True)
class Done:
    status: str


def _send(delivery_id: str, claim: Claim, endpoint: Endpoint | None) -> Outcome:
    settings = get_settings()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
    }
    if endpoint is not None:
        # A fresh signature each attempt, by every secret still in its rotation grace.
        headers["webhook-signature"] = signature_header(
            delivery_id, timestamp, claim.body, endpoint.signing_secrets(now()))
    return make_attempt(claim.number, claim.url, claim.body, headers,
                        connect_timeout=settings.connect_timeout_seconds,
                        total_timeout=settings.timeout_seconds)


def _stop(run: Run, reason: str) -> Done:
    # The attempt was claimed: release the claim with the stop, or it would lapse and
    # be run again for nothing.
    get_store().set_status(run.delivery_id, DeliveryStatus.RETRIES_EXHAUSTED,
                           stop_reason=reason, release=run)
    logger.warning("delivery %s stopped: %s", run.delivery_id, reason)
    return Done(DeliveryStatus.RETRIES_EXHAUSTED.value)


def _already_ran(delivery: Delivery, run: Run, number: int) -> Done | Retry:
    """A message for an attempt that is on record: a duplicate, or a retry that got lost."""
    later = any(attempt.number > number for attempt in delivery.attempts)
    if later or delivery.status is not DeliveryStatus.RETRYING or get_schedule().has_next(run):
        logger.warning("delivery %s: attempt %d already ran; dropping the duplicate",
                       delivery.id, number)
        return Done("duplicate")
    # Recorded, but its retry was never scheduled (the retry could not be
    # published, or the worker died in between): schedule it now, send nothing.
    logger.warning("delivery %s: attempt %d already ran; scheduling its retry", delivery.id,
                   number)
    due = delivery.next_attempt_at or now()
    return Retry(max(0.0, (due - now()).total_seconds()))


def run_attempt(delivery_id: str, cycle: int, retries: int) -> Done | Retry:
    store, settings = get_store(), get_settings()
    run = Run(delivery_id, cycle, retries)
    # One Redis call claims the attempt and reads what it needs; the whole record
    # is loaded only on the rare paths below.
    claim = store.claim_attempt(run, settings.recovery_seconds)
    if claim.outcome == "missing":
        logger.warning("delivery %s not found (expired or deleted); dropping", delivery_id)
        return Done("missing")
    if claim.outcome == "stale":
        logger.warning("delivery %s: dropping attempt %d of replaced cycle %d",
                       delivery_id, claim.number, cycle)
        return Done("stale")
    if claim.outcome == "final":
        logger.info("delivery %s is already final; dropping duplicate attempt %d",
                    delivery_id, claim.number)
        return Done("final")
    if claim.outcome == "recorded":
        return _already_ran(store.get(delivery_id), run, claim.number)
    if claim.outcome == "busy":
        logger.warning("delivery %s: attempt %d is running elsewhere; dropping the duplicate",
                       delivery_id, claim.number)
        return Done("duplicate")

    endpoint = None
    if claim.endpoint_id:
        if claim.endpoint is None:
            return _stop(run, f"endpoint {claim.endpoint_id} was deleted")
        endpoint = Endpoint.model_validate_json(claim.endpoint)
        if not endpoint.enabled:
            return _stop(run, f"endpoint disabled: {endpoint.disabled_reason}")

    # The destination stored with the record, the one the claim entered: leaving
    # another (should how destinations are named ever change) would hold a slot.
    gate = get_gate()
    dest = claim.destination or destination(claim.url, claim.endpoint_id)
    # The claim entered the destination too, unless the record predates that.
    entry = (isolation.entry(*claim.entry) if claim.entry is not None
             else gate.enter(dest, run, settings.recovery_seconds))
    if entry.busy:
        # At the destination's concurrency limit: wait in its queue for a slot,
        # without making (or counting) an attempt.
        gate.wait_for_slot(dest, run, entry)
        return Done("waiting")
    if not entry.allowed:
        # Its circuit is open: wait in the schedule until the next probe.
        gate.defer(run, entry.retry_at)
        return Done("deferred")
    outcome = _send(delivery_id, claim, endpoint)  # never raises: failures are outcomes
    attempt = outcome.attempt
    policy = BackoffPolicy.from_settings(settings)
    decision = policy.after_failure(retries, outcome.retry_after)
    exhausted = not attempt.succeeded and isinstance(decision, RetriesExhausted)
    disable_reason = None
    if endpoint is not None:
        disable_reason = health.judge(get_endpoints(), endpoint, attempt, exhausted,
                                      timedelta(seconds=settings.disable_after_seconds))

    if attempt.succeeded:
        store.record_attempt(run, attempt, DeliveryStatus.DELIVERED, destination=dest)
        return Done(DeliveryStatus.DELIVERED.value)
    if disable_reason is not None and endpoint is not None:
        # Disabled before the attempt is recorded, so that whoever sees this delivery
        # exhausted sees its endpoint disabled; the endpoint's other deliveries after.
        get_endpoints().disable(endpoint.id, disable_reason, stop=False)
        store.record_attempt(run, attempt, DeliveryStatus.RETRIES_EXHAUSTED,
                             stop_reason=f"endpoint disabled: {disable_reason}",
                             destination=dest)
        get_endpoints().stop_deliveries(endpoint.id, disable_reason)
        logger.warning("endpoint %s disabled: %s", endpoint.id, disable_reason)
        return Done(DeliveryStatus.RETRIES_EXHAUSTED.value)
    if isinstance(decision, RetriesExhausted):
        store.record_attempt(run, attempt, DeliveryStatus.RETRIES_EXHAUSTED, destination=dest)
        logger.warning("delivery %s: retries exhausted after %d attempts", delivery_id,
                       claim.number)
        return Done(DeliveryStatus.RETRIES_EXHAUSTED.value)
    # A long wait is parked in the same transaction that records the attempt, so
    # no crash can leave the delivery retrying with nothing scheduled.
    store.record_attempt(run, attempt, DeliveryStatus.RETRYING,
                         now() + timedelta(seconds=decision.countdown),
                         park=policy.parks(decision.countdown), destination=dest)
    return Retry(decision.countdown)
