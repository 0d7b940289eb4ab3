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
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from celery import Celery

from ..broker import messages
from ..clock import now
from ..models import Run
from ..retry import RetryLater
from ..system import System
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
    """This process's note of the run it took itself and is making: the worker reads it
    when the process is lost (killed, out of memory), to let go of that run's claim at
    once (:func:`taken_by`), as it does for the run of the message it handed over."""

    def __init__(self) -> None:
        self._pid, self._fd = 0, -1

    @contextmanager
    def making(self, run: Run) -> Iterator[None]:
        if self._pid != os.getpid():  # first use in this (forked) process
            self._pid = os.getpid()
            self._fd = os.open(_note_of(self._pid), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.pwrite(self._fd, run.member.encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(self._fd, 0)


_note = _Note()


def taken_by(pid: int) -> Run | None:
    """The run that the lost pool process ``pid`` took itself and was making, if any."""
    path = _note_of(pid)
    try:
        member = path.read_bytes()
        path.unlink()
    except OSError:
        return None
    try:
        return Run.parse(member) if member else None
    except ValueError:
        return None


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
    handed and not run is scheduled, for the promoter."""
    settings = system.settings
    budget, end = settings.drain_runs, time.monotonic() + settings.drain_seconds
    made = 0
    try:
        with messages.taking(app, queue) as take_message:
            while made < budget and time.monotonic() < end:
                if not (handoff.runs or take):
                    break
                if not _next(system, queue, take_message, handoff):
                    break
                made += 1
    finally:
        if handoff.runs:
            _schedule_handed(system, handoff)
    return made


def _next(
    system: System,
    queue: str | None,
    take_message: Callable[[], messages.Taken | None],
    handoff: Handoff,
) -> bool:
    """Make one run: the first handed, else the next message taken off the queue (a
    retry's message due later is parked instead). False: stop taking runs."""
    try:
        trace: Mapping[str, str] = {}
        settle: Callable[[bool], None] | None = None
        if handoff.runs:
            run = handoff.runs.pop(0)
            if not system.schedule.take_handed(run):
                return True  # the promoter has it: on to the next
            if system.settings.tracing:
                # No message carries its producer's trace: its record does, as the
                # promoter reads it for the message it would have published.
                ((_, carried),) = system.deliveries.routes([run.delivery_id])
                trace = json.loads(carried) if carried else {}
        else:
            while True:
                taken = take_message()
                if taken is None:
                    return False
                if taken.eta is None or taken.eta <= now():
                    break
                system.schedule.park_nx([taken.run], taken.eta.timestamp())
                taken.settle(False)
            run, trace, settle = taken.run, taken.trace, taken.settle
        try:
            with _note.making(run):
                step = run_attempt(system, run.delivery_id, run.cycle, run.retries, trace, handoff)
        except BaseException:
            if settle is not None:
                settle(True)
            raise
        if settle is not None:
            settle(False)
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


def _schedule_handed(system: System, handoff: Handoff) -> None:
    """Make the runs handed to this process that it did not run due now, for the
    promoter (they are in the schedule, a moment ahead)."""
    runs, handoff.runs = handoff.runs, []
    try:
        system.schedule.due_now(runs, time.time())
    except Exception as error:  # in the schedule still, a moment later
        logger.warning("could not schedule %d runs handed over: %s", len(runs), error)
