"""Application code around a traced cluster, for tests/test_observability.py.

- As a Celery configuration module (``CELERY_CONFIG_MODULE=tests.observed``), it
  is a deployment's own configuration as the README says to write one, with
  receivers connected to the failure signals: each writes one JSON line to the
  file named by ``OBSERVED_SIGNALS``, and one more receiver raises, as
  application code may.
- Run as ``python -m tests.observed PLAN``, it is a traced producer: inside one
  span, exported in memory, it calls ``deliver_many`` with the plan's
  (url, event) pairs and ``publish`` with its tenant's events, then prints the
  span and the delivery ids as JSON.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from webhooks.broker.config import *  # noqa: F403
from webhooks.signals import delivery_exhausted, delivery_recovered, endpoint_disabled


def _note(signal: str, **fields: Any) -> None:
    with open(os.environ["OBSERVED_SIGNALS"], "a") as out:
        out.write(json.dumps({"signal": signal, "pid": os.getpid(), **fields}) + "\n")


@delivery_exhausted.connect
def _exhausted(sender: Any, delivery: Any, **_: Any) -> None:
    _note(
        "delivery_exhausted",
        id=delivery.id,
        status=delivery.status.value,
        attempts=len(delivery.attempts),
    )


@delivery_exhausted.connect
def _raises(sender: Any, **_: Any) -> None:
    raise RuntimeError("the application's receiver failed")


@delivery_recovered.connect
def _recovered(sender: Any, delivery: Any, **_: Any) -> None:
    _note(
        "delivery_recovered",
        id=delivery.id,
        status=delivery.status.value,
        attempts=len(delivery.attempts),
    )


@endpoint_disabled.connect
def _disabled(sender: Any, endpoint: Any, reason: str, **_: Any) -> None:
    _note("endpoint_disabled", id=endpoint.id, enabled=endpoint.enabled, reason=reason)


def produce(plan: dict[str, Any]) -> dict[str, Any]:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from webhooks import deliver, deliver_many, publish

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    with trace.get_tracer("producer").start_as_current_span("producer") as span:
        bulk = deliver_many([(url, event) for url, event in plan["bulk"]])
        published = [publish(event, tenant=plan["tenant"]) for event in plan["published"]]
        for url, event, countdown in plan.get("delayed", []):
            deliver.apply_async((url, event), countdown=countdown)
    context = span.get_span_context()
    return {
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "exported": [finished.name for finished in exporter.get_finished_spans()],
        "bulk": bulk,
        "published": [i for ids in published for i in ids],
    }


if __name__ == "__main__":
    print(json.dumps(produce(json.loads(sys.argv[1]))))
