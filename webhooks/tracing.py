"""OpenTelemetry tracing, when the ``otel`` extra is installed; without it, each function
here costs one check and does nothing.

A delivery's trace follows it through every message, whichever way it goes out:

- a message carries the context current where it is published (the producer's
  span for ``publish``, ``deliver.delay`` and ``deliver_many``, the attempt's for
  a retry), as ``traceparent``/``tracestate`` headers (:func:`carrier`), on the
  bulk path too, which does not go through Celery's publish signals;
- a delivery stores its producer's context with its record, so that a run the
  promoter publishes later, with no span of its own, continues the same trace;
- the worker's attempt span (:func:`attempt_span`) is a child of Celery's task
  span when Celery is instrumented, else of the context its message carried.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from .models import Attempt

try:
    from opentelemetry import propagate, trace
except ImportError:  # the otel extra is not installed
    trace = None  # type: ignore[assignment]

__all__ = [
    "HEADERS",
    "AttemptSpan",
    "attempt_span",
    "available",
    "carrier",
    "flush",
    "from_headers",
    "instrument",
]

#: What the tracer provider is while none is set up (OpenTelemetry's API alone).
_NO_PROVIDER = (trace.ProxyTracerProvider, trace.NoOpTracerProvider) if trace is not None else ()

#: The message headers that carry a trace context (W3C Trace Context).
HEADERS = ("traceparent", "tracestate")


def available() -> bool:
    """Whether OpenTelemetry's API is installed (the ``otel`` extra)."""
    return trace is not None


def carrier() -> dict[str, str]:
    """The current trace context as message headers, or {} when no span is current."""
    if trace is None or not trace.get_current_span().get_span_context().is_valid:
        return {}
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return {name: value for name, value in headers.items() if name in HEADERS}


def from_headers(source: Any) -> dict[str, str]:
    """The trace headers of a message or task request (an object with attributes)."""
    if trace is None:
        return {}
    found = {name: getattr(source, name, None) for name in HEADERS}
    return {name: value for name, value in found.items() if isinstance(value, str)}


class AttemptSpan:
    """What the runner tells the attempt's span once the attempt is made."""

    def __init__(self, span: Any = None) -> None:
        self._span = span

    def finish(self, attempt: Attempt) -> None:
        if self._span is None:
            return
        if attempt.status_code is not None:
            self._span.set_attribute("http.response.status_code", attempt.status_code)
        self._span.set_attribute("webhooks.outcome", attempt.outcome)
        self._span.set_attribute("webhooks.error_kind", attempt.error_kind)
        if not attempt.succeeded:
            self._span.set_status(trace.Status(trace.StatusCode.ERROR, attempt.error_kind))


@contextmanager
def attempt_span(
    headers: Mapping[str, str], delivery_id: str, number: int, url: str
) -> Iterator[AttemptSpan]:
    """A span for one attempt: a child of the current span (Celery's task span), or of
    the context its message carried when there is none."""
    if trace is None or isinstance(trace.get_tracer_provider(), _NO_PROVIDER):
        # No tracer provider set up: the span would record nothing, and nothing within
        # the attempt reads the current context (retries are published after it). Its
        # making was 5 % of a pool process's CPU (py-spy).
        yield AttemptSpan()
        return
    parent = None
    if not trace.get_current_span().get_span_context().is_valid and headers:
        parent = propagate.extract(dict(headers))
    tracer = trace.get_tracer("webhooks")
    # The URL's host only: its path and query may carry the customer's credentials.
    attributes: dict[str, str | int] = {
        "webhooks.delivery_id": delivery_id,
        "webhooks.attempt": number,
        "server.address": _host(url),
    }
    with tracer.start_as_current_span(
        "webhooks.attempt", context=parent, kind=trace.SpanKind.CLIENT, attributes=attributes
    ) as span:
        yield AttemptSpan(span)


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


def instrument() -> None:
    """Trace this process: set up an SDK tracer provider exporting over OTLP (as the
    ``OTEL_*`` variables say) unless the application set one up already, and
    instrument Celery, requests and Redis. Workers call it in each pool process
    when ``WEBHOOKS_TRACING`` is on."""
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        name = os.environ.get("OTEL_SERVICE_NAME") or "webhooks"
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    celery = CeleryInstrumentor()  # type: ignore[no-untyped-call]
    for instrumentor in (celery, RequestsInstrumentor(), RedisInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()


def flush() -> None:
    """Export what is buffered (a pool process is about to exit)."""
    if trace is None:
        return
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush()
