"""A pool process taking runs off its queue itself, after the run its message gave it.

Per delivery, Celery's own work around a task (the worker's fetch, the hand-over
to a pool process and back, the request's bookkeeping) cost more CPU than the
attempt's POST: a pool process that has just finished a run takes the next one
straight off the same queue (:func:`webhooks.broker.messages.taking`: one RPOP,
or one ``basic.get``) and runs it, up to ``WEBHOOKS_DRAIN_RUNS`` runs or
``WEBHOOKS_DRAIN_SECONDS``, whichever ends first, then goes back to the worker
for its next message.

Nothing is guaranteed differently from a message the worker fetched. On Redis,
kombu's ack emulation is off (webhooks/broker/config.py): one taken here lives
in this process alone until its attempt's claim, which the promoter runs again
when its lease lapses; one taken and never claimed (the process was killed in
between) is found by the backstop. On RabbitMQ it is taken with ``basic.get``
and acknowledged once its run is over, so RabbitMQ hands it out again should
this process die first, and the attempt's claim makes that a no-op if it ran.
A retry's ETA message taken here is parked in the schedule for its due time
instead of held, so no process holds what is not due. A warm shutdown waits for
the run in flight, as for a task, and at most ``WEBHOOKS_DRAIN_SECONDS`` more.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import cast

from celery import Celery

from ..broker import messages
from ..clock import now
from ..models import Run
from ..retry import RetryLater
from ..storage.deliveries import Claim, NextRun
from ..system import System
from .promoter import Promoter
from .runner import Done, Handoff, RunResult, run_attempt, schedule_retry

__all__ = ["SATURATED", "drain", "taken_by"]

logger = logging.getLogger(__name__)

#: A run that leaves its destination full (or closed, or over its rate): the queue's
#: next runs are likely for it too, and are better left to the worker's pace.
SATURATED = frozenset({RunResult.WAITING, RunResult.DEFERRED, RunResult.PACED})


#: Where each pool process notes the run it took and is making, for the worker to read
#: should the process be lost (a file per process id, in memory where Linux has it).
_NOTES = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


def _note_of(pid: int) -> Path:
    return _NOTES / f"webhooks-taken-{pid}"


class _Note:
    """This process's note of the runs it took itself and is making: the one in flight
    and the one after it, whose claim the in-flight run's record makes. The worker reads
    it when the process is lost (killed, out of memory), to let go of their claims at
    once (:func:`taken_by`), as it does for the run of the message it handed over."""

    def __init__(self) -> None:
        self._pid, self._fd = 0, -1

    @contextmanager
    def making(self, run: Run, after: Run | None) -> Iterator[None]:
        if self._pid != os.getpid():  # first use in this (forked) process
            self._pid = os.getpid()
            self._fd = os.open(_note_of(self._pid), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        # Empty here: created so, and emptied as each run ends.
        note = run.member if after is None else f"{run.member}\n{after.member}"
        os.pwrite(self._fd, note.encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(self._fd, 0)


_note = _Note()


def taken_by(pid: int) -> list[Run]:
    """The runs that the lost pool process ``pid`` took itself and was making, or had
    claimed to make next."""
    path = _note_of(pid)
    try:
        note = path.read_bytes()
        path.unlink()
    except OSError:
        return []
    runs = []
    for member in note.split(b"\n"):
        with suppress(ValueError):
            runs.append(Run.parse(member))
    return runs


@dataclass
class _Upcoming:
    """A run this process makes: handed over by a record, or taken off the queue."""

    run: Run
    trace: Mapping[str, str]
    #: The taken message's (see :class:`webhooks.broker.messages.Taken`); None: handed.
    settle: Callable[[bool], None] | None = None
    #: Its claim, made with a record: the record that handed it, or the record of the
    #: run before it (None: claimed as it is made).
    claim: Claim | None = None
    #: Handed over by a record: its destination had runs waiting for a slot.
    handed: bool = False
    #: The taken message, kept should the run wait at its destination (a Redis list
    #: in the store's Redis: :attr:`Handoff.releases`).
    message: tuple[bytes, str] | None = None


def drain(
    system: System,
    app: Celery,
    queue: str | None,
    handoff: Handoff,
    *,
    take: bool = True,
) -> int:
    """Run what the attempts' records handed this process (``handoff``), then (with
    ``take``) what it takes off ``queue``, until the limits, an empty queue, or a run
    that finds its destination saturated; returns how many runs were made. What was
    handed and not run is scheduled, for the promoter.

    Each run's next is known before the run is made, so that its record claims the
    next in the same round trip (:attr:`Handoff.next`)."""
    settings = system.settings
    budget, end = settings.drain_runs, time.monotonic() + settings.drain_seconds
    lease = settings.claim_lease_seconds
    made = 0
    try:
        with messages.taking(app, queue) as take_message:
            source = _Source(take_message if take else None)
            upcoming: _Upcoming | None = None
            try:
                while True:
                    over = made >= budget or time.monotonic() >= end
                    if upcoming is None:
                        # A run claimed by the record that handed it is made regardless.
                        if (over and not handoff.claimed) or (
                            upcoming := _upcoming(system, source, handoff)
                        ) is None:
                            break
                    elif over and upcoming.claim is None:
                        break  # lined up, not claimed yet: left as found (below)
                    current, upcoming = upcoming, None
                    handoff.more = made + 1 < budget and time.monotonic() < end
                    if handoff.more:
                        # After a handed run, its destination likely has more waiting:
                        # its record claims the next of them, so nothing is taken off
                        # the queue to line up before it (that run would then be handed
                        # unclaimed, and cost two round trips more).
                        upcoming = _upcoming(system, source, handoff, take=not current.handed)
                    # Claimed with the current run's record, unless claimed already.
                    lined_up = upcoming if upcoming is not None and upcoming.claim is None else None
                    handoff.next = (
                        NextRun(lined_up.run, lease, handed=lined_up.settle is None)
                        if lined_up is not None
                        else None
                    )
                    handoff.claim = None
                    go_on = _make(system, queue, current, handoff)
                    made += 1
                    if lined_up is not None:
                        lined_up.claim = handoff.claim
                    if not go_on:
                        # Its destination is saturated: the queue's next runs are left
                        # to the worker's pace; what was handed here is still run.
                        source.take = None
                        if upcoming is not None and upcoming.claim is None:
                            _leave(system, upcoming, handoff)
                            upcoming = None
            finally:
                # Lined up and not claimed with a record (a claimed one was made above).
                if upcoming is not None and upcoming.claim is None:
                    _leave(system, upcoming, handoff)
    finally:
        handoff.next = handoff.claim = None
        if handoff.runs or handoff.claimed:
            _schedule_handed(system, handoff)
    return made


@dataclass
class _Source:
    """Where the runs after those handed over come from: the queue, until it is found
    empty or left (None)."""

    take: Callable[[], messages.Taken | None] | None


def _upcoming(
    system: System, source: _Source, handoff: Handoff, *, take: bool = True
) -> _Upcoming | None:
    """The next run to make: the first handed, else (with ``take``) the next message
    taken off the queue (a retry's message due later is parked instead)."""
    try:
        if handoff.claimed:
            run, claim = handoff.claimed.pop(0)
            return _Upcoming(run, _carried(system, run), claim=claim, handed=True)
        if handoff.runs:
            run = handoff.runs.pop(0)
            return _Upcoming(run, _carried(system, run), handed=True)
        while take and source.take is not None:
            taken = source.take()
            if taken is None:
                source.take = None  # empty: not asked again in this drain
                return None
            if taken.eta is None or taken.eta <= now():
                message = taken.message if handoff.releases else None
                return _Upcoming(taken.run, taken.trace, taken.settle, message=message)
            system.schedule.park_nx([taken.run], taken.eta.timestamp())
            taken.settle(False)
    except Exception as error:
        # Redis or the broker went away: what was taken comes back through the
        # backstop, like a message of a worker that died.
        logger.warning("stopped taking runs off the queue: %s", error)
        source.take = None
    return None


def _carried(system: System, run: Run) -> Mapping[str, str]:
    """The trace context of a handed run's producer: no message carries it, its record
    does (the promoter reads it for the message it would have published)."""
    if not system.settings.tracing:
        return {}
    ((_, carried),) = system.deliveries.routes([run.delivery_id])
    return cast(Mapping[str, str], json.loads(carried)) if carried else {}


def _make(system: System, queue: str | None, current: _Upcoming, handoff: Handoff) -> bool:
    """Make one run. False: stop taking runs."""
    run, claim = current.run, current.claim
    try:
        if claim is None and current.settle is None and not system.schedule.take_handed(run):
            return True  # handed, and the promoter has it: on to the next
        try:
            after = handoff.next.run if handoff.next is not None else None
            with _note.making(run, after):
                step = run_attempt(
                    system,
                    run.delivery_id,
                    run.cycle,
                    run.retries,
                    current.trace,
                    handoff,
                    claim,
                    current.message,
                )
        except BaseException:
            if current.settle is not None:
                with suppress(Exception):  # else its lapsed claim, or the backstop
                    current.settle(True)
            raise
        if current.settle is not None:
            current.settle(False)
        if isinstance(step, RetryLater):
            if not step.parked:
                due = now() + timedelta(seconds=step.countdown)
                schedule_retry(system, run.next(), due, queue)
        elif isinstance(step, Done) and step.result in SATURATED:
            return False
        return True
    except Exception as error:
        # Redis or the broker went away mid-run: what was taken comes back through
        # its lapsed claim or the backstop, like a message of a worker that died.
        logger.warning("stopped taking runs off the queue: %s", error)
        return False


def _leave(system: System, upcoming: _Upcoming, handoff: Handoff) -> None:
    """Leave a run that was lined up and will not be made here: a handed one to the
    promoter, a taken message back to its queue."""
    if upcoming.settle is None:
        handoff.runs.insert(0, upcoming.run)
        return
    try:
        upcoming.settle(True)
    except Exception as error:  # the backstop finds it
        logger.warning("could not give back a message taken off the queue: %s", error)


def _schedule_handed(system: System, handoff: Handoff) -> None:
    """Send the messages of the runs handed to this process that it did not run (they
    are in the schedule a moment ahead, for the promoter should this fail); let go of
    those claimed for it (they are due now, as a lost process's)."""
    claimed, handoff.claimed = handoff.claimed, []
    for run, _ in claimed:
        try:
            system.deliveries.abandon_attempt(run)
        except Exception as error:  # its claim lapses by itself
            logger.warning("could not let go of run %s handed over: %s", run.member, error)
    runs, handoff.runs = handoff.runs, []
    if not runs:
        return
    try:
        # Out now, as the promoter would send them at its next look (up to
        # WEBHOOKS_PROMOTE_INTERVAL_SECONDS on): those it has not taken already.
        taken = [run for run in runs if system.schedule.take_handed(run)]
        Promoter(system).publish(taken, time.time())  # put back due now if refused
    except Exception as error:  # in the schedule still, or put back: a moment later
        logger.warning("could not send %d runs handed over: %s", len(runs), error)
