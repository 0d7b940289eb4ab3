"""Log output: readable lines by default, one JSON object per line with
``WEBHOOKS_LOG_FORMAT=json``.

JSON goes through structlog's formatter on the standard library's root logger, so
Celery's own lines, warnings and tracebacks (as one ``exception`` field) come out
as JSON as well as ours. Each attempt writes exactly one line (:func:`attempt`)
whose fields are a contract: ``event="attempt"``, ``delivery_id``, ``tenant_id``,
``endpoint_id``, ``attempt``, ``outcome``, ``status_code``, ``duration_ms``,
``error_kind`` and ``next_attempt_at``. Never a body, a secret, a header value or
the receiver's words (its error message or reason phrase): only what we measured.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import MutableMapping
from datetime import datetime
from typing import Any

from celery import signals

from .clock import isoformat, now
from .models import Attempt
from .settings import get_settings

__all__ = ["FIELDS", "attempt", "configure", "install"]

#: The key of a log record's structured fields (``extra={FIELDS: {...}}``).
FIELDS = "webhooks_fields"

_attempts = logging.getLogger("webhooks.attempts")


def attempt(
    delivery_id: str,
    tenant_id: str | None,
    endpoint_id: str | None,
    made: Attempt,
    next_attempt_at: datetime | None,
) -> None:
    """The one line an attempt writes, once it is on record."""
    fields = {
        "event": "attempt",
        "delivery_id": delivery_id,
        "tenant_id": tenant_id,
        "endpoint_id": endpoint_id,
        "attempt": made.number,
        "outcome": made.outcome,
        "status_code": made.status_code,
        "duration_ms": made.duration_ms,
        "error_kind": made.error_kind,
        "next_attempt_at": isoformat(next_attempt_at) if next_attempt_at else None,
    }
    answer = f"HTTP {made.status_code}" if made.status_code is not None else "no answer"
    then = f"; next attempt at {fields['next_attempt_at']}" if next_attempt_at else ""
    _attempts.info(
        "attempt %d of %s %s (%s, %s) in %.1f ms%s",
        made.number,
        delivery_id,
        made.outcome,
        made.error_kind,
        answer,
        made.duration_ms,
        then,
        extra={FIELDS: fields},
    )


def _lift_fields(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A record's structured fields become the line's (``event`` included)."""
    fields = getattr(event.get("_record"), FIELDS, None)
    if isinstance(fields, dict):
        event.update(fields)
    return event


def json_formatter() -> logging.Formatter:
    # Imported here: a process in text mode (most producers) never pays for it.
    import structlog

    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _lift_fields,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )


def configure(level: int | str = logging.INFO, stream: Any = None) -> None:
    """Send every log record to ``stream`` (stderr) as one JSON line, at ``level``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)


def _celery_logging(
    loglevel: int | str | None = None, logfile: str | None = None, **_: Any
) -> None:
    configure(loglevel or logging.INFO, open(logfile, "a", buffering=1) if logfile else None)  # noqa: SIM115


def _json_say(msg: str, f: Any = None) -> None:
    """Celery's ``safe_say`` (its shutdown notices, printed from signal handlers) as a
    JSON line: written straight to the file descriptor, as Celery does, since a
    signal handler must not wait for the logging lock."""
    line = json.dumps(
        {
            "event": msg.strip(),
            "level": "warning",
            "logger": "celery.apps.worker",
            "timestamp": isoformat(now()),
        }
    )
    target: Any = f if f is not None else sys.__stderr__
    os.write(target.fileno(), (line + "\n").encode())


def _celery_worker_starts(**_: Any) -> None:
    # Before Celery's own start-up checks, whose warnings would come out as plain text.
    from celery.apps import worker

    configure()
    logging.captureWarnings(True)
    setattr(worker, "safe_say", _json_say)  # noqa: B010  (listed in broker/internals.py)


def _celery_quiet(instance: Any = None, **_: Any) -> None:
    # The startup banner is printed, not logged: in JSON mode every line is JSON.
    if instance is not None:
        instance.quiet = True


def install() -> None:
    """With ``WEBHOOKS_LOG_FORMAT=json``, take over Celery's logging setup (workers,
    Flower) so that every line is JSON, the startup banner left out."""
    if get_settings().log_format != "json":
        return
    signals.celeryd_init.connect(_celery_worker_starts, weak=False)
    signals.setup_logging.connect(_celery_logging, weak=False)
    signals.celeryd_after_setup.connect(_celery_quiet, weak=False)
