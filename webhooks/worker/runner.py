"""One run of the delivery task: make the attempt that is due, decide what follows it.

Kept apart from Celery, so that it can be run and tested on its own: the task
(:mod:`.task`) turns a :class:`~webhooks.retry.RetryLater` into ``self.retry(...)``
and a :class:`Done` into its return value.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial
from typing import Any

from .. import logs, tracing
from ..clock import now
from ..errors import EndpointNotFound
from ..models import Attempt, AttemptError, Delivery, DeliveryStatus, Endpoint, ErrorKind, Run
from ..producer import Producer
from ..retry import BackoffPolicy, RetriesExhausted, RetryLater
from ..sending.attempt import TEST_HEADERS, Outcome
from ..signals import OPERATIONAL_TYPES
from ..storage.deliveries import Claim, ClaimOutcome, NextRun
from ..storage.destinations import EntryOutcome, Strain, destination
from ..system import System
from . import announce, health
from .leases import holding

__all__ = ["Done", "Handoff", "RunResult", "run_attempt", "schedule_retry"]

logger = logging.getLogger(__name__)


class RunResult(StrEnum):
    """How a run ended when no retry follows it."""

    DELIVERED = DeliveryStatus.DELIVERED.value
    RETRIES_EXHAUSTED = DeliveryStatus.RETRIES_EXHAUSTED.value
    WAITING = "waiting"  # queued for a slot at its busy destination
    DEFERRED = "deferred"  # its destination's circuit is open: parked until the next probe
    PACED = "paced"  # over its endpoint's rate limit: scheduled for the start it reserved
    DUPLICATE = "duplicate"  # the attempt is running elsewhere or was made already
    MISSING = "missing"  # the record is gone (expired or deleted)
    STALE = "stale"  # a message of a cycle that redeliver replaced
    FINAL = "final"  # the delivery was already delivered or exhausted
    BEHIND = "behind"  # it waits behind its ordering key's previous delivery, which wakes it


@dataclass(frozen=True)
class Done:
    """The run is over and schedules nothing itself."""

    result: RunResult


@dataclass
class Handoff:
    """Where a process that goes on taking runs (:mod:`.drain`) collects the runs its
    attempts' records handed it: each waited at the destination for the slot the
    attempt freed, and is routed to ``queue`` (``default_queue``: the queue of a
    delivery that names none). Each waits in the schedule a moment, for whoever holds
    this to take it out and run it, or make it due now."""

    queue: str
    default_queue: str
    runs: list[Run] = field(default_factory=list)
    #: Runs handed over and claimed by the record that handed them (when no run was
    #: lined up after it): out of the schedule, for the holder to make with that claim.
    claimed: list[tuple[Run, Claim]] = field(default_factory=list)
    #: The run the holder makes next, claimed in the same round trip as the record of
    #: the attempt before it (:meth:`~webhooks.storage.deliveries.DeliveryStore.record_attempt`),
    #: and that claim, once made (None: the run is claimed apart, as usual).
    next: NextRun | None = None
    claim: Claim | None = None
    #: Whether the holder makes another run after this one: only then is the run the
    #: freed slot goes to handed to it claimed by the record.
    more: bool = True
    #: Whether a record sends that run's message itself, straight onto the queue (a
    #: Redis broker in the store's Redis): then a holder making no more runs is handed
    #: none. Else it is handed the run unclaimed, and publishes its message as it stops.
    releases: bool = True


def schedule_retry(system: System, run: Run, due: datetime, queue: str | None) -> None:
    """Send ``run`` (a retry) as an ETA message to ``queue``; should the broker refuse it,
    park it in Redis instead; raise if that fails too."""
    try:
        Producer(system).enqueue([run], queue, due=due)
    except Exception as refused:
        logger.warning(
            "delivery %s: the retry could not be published (%s); parking it",
            run.delivery_id,
            refused,
        )
        system.schedule.park_nx([run], due.timestamp())


def run_attempt(
    system: System,
    delivery_id: str,
    cycle: int,
    retries: int,
    trace: Mapping[str, str] | None = None,
    handoff: Handoff | None = None,
    claim: Claim | None = None,
    message: tuple[bytes, str] | None = None,
) -> Done | RetryLater:
    """Claim attempt ``retries + 1`` of the cycle, make it if it is ours to make, record
    it with what it led to, and say whether a retry follows. ``trace``: the trace
    context its message carried; ``handoff``: where the record puts the run waiting
    for the slot the attempt frees, for this process to run next, and the claim of
    the run it makes next; ``claim``: this run's, made so already; ``message``: its
    message as taken off a list in the store's Redis, and that list's key, kept should
    the run wait at its destination (pushed back as a slot frees)."""
    store, settings = system.deliveries, system.settings
    run = Run(delivery_id, cycle, retries)
    lease = settings.claim_lease_seconds
    # One Redis call claims the attempt and reads what it needs; the whole record
    # is loaded only on the rare paths below.
    if claim is None:
        claim = store.claim_attempt(run, lease)
    if claim.outcome is not ClaimOutcome.CLAIMED:
        return _not_claimed(system, run, claim)

    endpoint = None
    if claim.endpoint_id:
        if claim.endpoint is None:
            return _stop(system, run, f"endpoint {claim.endpoint_id} was deleted")
        endpoint = system.endpoints.load(claim.endpoint)
        if not endpoint.enabled:
            return _stop(system, run, f"endpoint disabled: {endpoint.disabled_reason}")

    # The destination stored with the record, the one the claim entered: leaving
    # another (should how destinations are named ever change) would hold a slot.
    gate = system.gate
    dest = claim.destination or destination(claim.url, claim.endpoint_id)
    # The claim entered the destination too, unless the record predates that.
    rate = endpoint.rate_limit if endpoint is not None else None
    entry = claim.entry or gate.enter(dest, run, lease, rate)
    if entry.outcome is EntryOutcome.PACED:
        # Over the endpoint's rate limit: scheduled once, for the start it reserved,
        # without making (or counting) an attempt.
        gate.pace(run, entry.retry_at)
        return Done(RunResult.PACED)
    if entry.outcome is EntryOutcome.THROTTLED:
        # Further off: it waits in the destination's queue for a reservation.
        gate.throttle(dest, run, entry, rate)
        return Done(RunResult.PACED)
    if entry.outcome is EntryOutcome.BUSY:
        # At the destination's concurrency limit: wait in its queue for a slot,
        # without making (or counting) an attempt.
        gate.wait_for_slot(dest, run, entry, message)
        return Done(RunResult.WAITING)
    if not entry.allowed:
        # Its circuit is open: one run waits in the schedule for the next probe, the
        # rest in the destination's queue for that probe's result.
        gate.defer(dest, run, entry.retry_at, message)
        return Done(RunResult.DEFERRED)
    if entry.start_at:
        # Let in with a start a moment away (under PACE_HOLD): waited for here, as
        # scheduling it would take longer than the wait.
        time.sleep(max(0.0, entry.start_at - time.time()))
    with holding(store, run, dest, lease):
        return _attempt(system, run, claim, endpoint, dest, trace or {}, handoff)


def _attempt(
    system: System,
    run: Run,
    claim: Claim,
    endpoint: Endpoint | None,
    dest: str,
    trace: Mapping[str, str],
    handoff: Handoff | None,
) -> Done | RetryLater:
    """Make the claimed attempt, record what it led to, log it, and announce a failure."""
    with tracing.attempt_span(trace, run.delivery_id, claim.number, claim.url) as span:
        step, attempt, next_at, disabled = _make_and_record(
            system, run, claim, endpoint, dest, handoff
        )
        span.finish(attempt)
    logs.attempt(run.delivery_id, claim.tenant_id, claim.endpoint_id, attempt, next_at)
    if _operational(claim):
        return step  # an operational webhook announces nothing of its own
    if disabled is not None and endpoint is not None:
        announce.disabled(system, endpoint.id, disabled)
    if isinstance(step, Done) and step.result is RunResult.RETRIES_EXHAUSTED:
        announce.exhausted(system, run.delivery_id)
    elif attempt.succeeded and claim.number > 1:
        announce.recovered(system, run.delivery_id)
    return step


def _operational(claim: Claim) -> bool:
    """An operational webhook: a bare delivery of a type no producer's event can have."""
    return claim.event_type in OPERATIONAL_TYPES and claim.endpoint_id is None


def _secrets(system: System, claim: Claim, endpoint: Endpoint | None) -> list[str]:
    """The secrets that sign the attempt: its endpoint's, the operator's for an
    operational webhook, none for a bare URL."""
    if endpoint is not None:
        return endpoint.signing_secrets(now())
    secret = system.settings.operational_secret
    if _operational(claim) and secret is not None:
        return [secret.get_secret_value()]
    return []


def _make_and_record(
    system: System,
    run: Run,
    claim: Claim,
    endpoint: Endpoint | None,
    dest: str,
    handoff: Handoff | None,
) -> tuple[Done | RetryLater, Attempt, datetime | None, str | None]:
    """Make the attempt and record it with what it led to: the step that follows, the
    attempt, when the next one is due, and why the endpoint was disabled (gone,
    failing) if this attempt disabled it."""
    store, settings = system.deliveries, system.settings
    unreadable = endpoint is not None and endpoint.unreadable(now())
    if unreadable:
        outcome = _unsent(claim.number, claim.endpoint_id)
    else:
        extra = endpoint.headers if endpoint is not None else {}
        if claim.test:
            extra = {**extra, **TEST_HEADERS}
        outcome = system.sender.attempt(
            run.delivery_id,
            claim.number,
            claim.url,
            claim.body,
            _secrets(system, claim, endpoint),
            extra,
        )  # never raises
    attempt = outcome.attempt
    policy = BackoffPolicy.from_settings(settings)
    decision = policy.after_failure(run.retries, outcome.retry_after)
    exhausted = not attempt.succeeded and isinstance(decision, RetriesExhausted)
    disable_reason = None
    # An attempt that sent nothing says nothing of the receiver: its failure clock
    # stays as it was, so a wrong key list or our own egress proxy being down never
    # disables the customer's endpoint.
    if endpoint is not None and not unreadable and outcome.about_receiver:
        disable_reason = health.judge(
            system.endpoints,
            endpoint,
            attempt,
            exhausted,
            timedelta(seconds=settings.disable_after_seconds),
        )
    # A holder making no more runs is handed none when the record can send that run's
    # message itself: it goes out at once, not to the schedule for the promoter's next
    # look (up to WEBHOOKS_PROMOTE_INTERVAL_SECONDS, at every drain's end).
    holder = handoff if handoff is not None and (handoff.more or not handoff.releases) else None
    # The attempt is made: should Redis be away a while, its record waits for it
    # rather than be lost (and the attempt made again).
    write = partial(
        store.record_attempt,
        run,
        attempt,
        destination=dest,
        tenant_id=claim.tenant_id,
        persist_for=settings.recovery_seconds,
        # An attempt that sent nothing says nothing of the receiver's load either.
        strain=None
        if unreadable
        else Strain.of(
            attempt, outcome.retry_after, endpoint.rate_limit if endpoint is not None else None
        ),
        handoff=(holder.queue, holder.default_queue) if holder is not None else None,
    )

    def record(*args: Any, **kwargs: Any) -> None:
        if holder is None:
            write(*args, **kwargs)
            return
        # With more runs to make and none lined up after this one, the run the record
        # hands over is claimed by the record itself.
        lined_up = holder.next
        lease = settings.claim_lease_seconds if lined_up is None and holder.more else None
        handed, holder.claim, claimed = write(
            *args, then_claim=lined_up, claim_handed=lease, **kwargs
        )
        if handed is not None and claimed is not None:
            holder.claimed.append((handed, claimed))
        elif handed is not None:
            holder.runs.append(handed)

    if attempt.succeeded:
        record(DeliveryStatus.DELIVERED)
        return Done(RunResult.DELIVERED), attempt, None, None
    if disable_reason is not None and endpoint is not None:
        # Disabled before the attempt is recorded, so that whoever sees this delivery
        # exhausted sees its endpoint disabled; the endpoint's other deliveries after.
        reason = f"endpoint disabled: {disable_reason}"
        cause = "gone" if attempt.status_code == health.GONE else "failing"
        with suppress(EndpointNotFound):  # deleted meanwhile: its deliveries stopped already
            system.endpoints.disable(endpoint.id, disable_reason, stop=False, cause=cause)
        record(DeliveryStatus.RETRIES_EXHAUSTED, stop_reason=reason)
        system.endpoints.stop_deliveries(endpoint.id, reason)
        logger.warning("endpoint %s disabled: %s", endpoint.id, disable_reason)
        return Done(RunResult.RETRIES_EXHAUSTED), attempt, None, cause
    if isinstance(decision, RetriesExhausted):
        record(DeliveryStatus.RETRIES_EXHAUSTED)
        logger.warning(
            "delivery %s: retries exhausted after %d attempts", run.delivery_id, claim.number
        )
        return Done(RunResult.RETRIES_EXHAUSTED), attempt, None, None
    # A long wait is parked in the same transaction that records the attempt, so
    # no crash can leave the delivery retrying with nothing scheduled.
    due = now() + timedelta(seconds=decision.countdown)
    record(DeliveryStatus.RETRYING, due, park=decision.parked)
    return decision, attempt, due, None


def _unsent(number: int, endpoint_id: str | None) -> Outcome:
    """A failed attempt that sent nothing: a signing secret or header value of the
    endpoint decrypts under no key of WEBHOOKS_ENCRYPTION_KEYS. It is retried with the
    usual backoff, so that deliveries go once the operator restores the key."""
    return Outcome(
        Attempt(
            number=number,
            started_at=now(),
            duration_ms=0.0,
            status_code=None,
            error=AttemptError(
                kind=ErrorKind.SECRET_UNREADABLE,
                message=f"endpoint {endpoint_id}: a signing secret or header value decrypts "
                "under no key of WEBHOOKS_ENCRYPTION_KEYS; nothing was sent",
            ),
            response_body="",
        )
    )


def _not_claimed(system: System, run: Run, claim: Claim) -> Done | RetryLater:
    """Why this run makes no attempt, logged; a recorded attempt may still owe its retry."""
    if claim.outcome is ClaimOutcome.MISSING:
        logger.warning("delivery %s not found (expired or deleted); dropping", run.delivery_id)
        return Done(RunResult.MISSING)
    if claim.outcome is ClaimOutcome.STALE:
        logger.warning(
            "delivery %s: dropping attempt %d of replaced cycle %d",
            run.delivery_id,
            claim.number,
            run.cycle,
        )
        return Done(RunResult.STALE)
    if claim.outcome is ClaimOutcome.FINAL:
        logger.info(
            "delivery %s is already final; dropping duplicate attempt %d",
            run.delivery_id,
            claim.number,
        )
        return Done(RunResult.FINAL)
    if claim.outcome is ClaimOutcome.BEHIND:
        # A message it should not have (another broker's publish, a duplicate): the
        # delivery before it of its ordering key schedules it when that one finishes.
        logger.info("delivery %s waits behind its ordering key; dropping the run", run.delivery_id)
        return Done(RunResult.BEHIND)
    if claim.outcome is ClaimOutcome.RECORDED:
        return _already_ran(system, system.deliveries.get(run.delivery_id), run, claim.number)
    logger.warning(
        "delivery %s: attempt %d is running elsewhere; dropping the duplicate",
        run.delivery_id,
        claim.number,
    )
    return Done(RunResult.DUPLICATE)


def _stop(system: System, run: Run, reason: str) -> Done:
    # The attempt was claimed: release the claim with the stop, or it would lapse and
    # be run again for nothing.
    system.deliveries.set_status(
        run.delivery_id, DeliveryStatus.RETRIES_EXHAUSTED, stop_reason=reason, release=run
    )
    logger.warning("delivery %s stopped: %s", run.delivery_id, reason)
    return Done(RunResult.RETRIES_EXHAUSTED)


def _already_ran(system: System, delivery: Delivery, run: Run, number: int) -> Done | RetryLater:
    """A message for an attempt that is on record: a duplicate, or a retry that got lost."""
    later = any(attempt.number > number for attempt in delivery.attempts)
    if later or delivery.status is not DeliveryStatus.RETRYING or system.schedule.has_next(run):
        logger.warning(
            "delivery %s: attempt %d already ran; dropping the duplicate", delivery.id, number
        )
        return Done(RunResult.DUPLICATE)
    # Recorded, but its retry was never scheduled (the retry could not be
    # published, or the worker died in between): schedule it now, send nothing.
    logger.warning("delivery %s: attempt %d already ran; scheduling its retry", delivery.id, number)
    due = delivery.next_attempt_at or now()
    retry = BackoffPolicy.from_settings(system.settings).wait(
        max(0.0, (due - now()).total_seconds())
    )
    if retry.parked:
        system.schedule.park_nx([run.next()], due.timestamp())
    return retry
