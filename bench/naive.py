"""The design card's delivery task done naively: the baseline that bench/engines.py
measures this project against.

    celery -A bench.naive worker

One ``@app.task`` that POSTs the event and calls ``self.retry`` on a failure, with
Celery's defaults everywhere else (prefork, one process per core, prefetch 4,
early acks) on a Redis broker: ``NAIVE_BROKER_URL``. ``NAIVE_ACK_EMULATION=0``
turns off kombu's ack emulation, the one setting the comparison varies. It
keeps no record, claims nothing and has no destination limits or breaker: what
it costs is Celery's and the POST's.
"""

from __future__ import annotations

import os

import requests
from celery import Celery, Task

app = Celery("naive", broker=os.environ.get("NAIVE_BROKER_URL", "redis://127.0.0.1:6379/12"))
app.conf.broker_transport_options = {
    "ack_emulation": os.environ.get("NAIVE_ACK_EMULATION", "1") != "0"
}

# One keep-alive session per pool process (made before the fork, used after it), as
# the bare loop has: what differs is Celery, not connection reuse.
_session = requests.Session()
_session.trust_env = False  # the receiver is on loopback: never through a proxy


@app.task(bind=True, max_retries=14)
def deliver(self: Task, url: str, body: str) -> None:  # type: ignore[type-arg]
    """POST ``body`` to ``url``; on a failure, again after 1, 2, 4 ... seconds."""
    try:
        response = _session.post(
            url, data=body, headers={"Content-Type": "application/json"}, timeout=15
        )
        response.raise_for_status()
    except requests.RequestException as exc:
        raise self.retry(exc=exc, countdown=2**self.request.retries) from exc
