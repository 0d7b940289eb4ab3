"""Prometheus metrics for the whole cluster, read at scrape time.

Counters live in Redis (:mod:`webhooks.storage.counters`), bumped by the very
scripts that record deliveries and attempts, so every worker on every host adds
to the same figures and a restart loses none. The gauges are read beside them:
parked retries, overdue deliveries, open circuits and paced destinations from the store, the queue
depth from the broker. No label takes a tenant's, an endpoint's or a URL's value:
per-tenant figures are ``webhooks stats --tenant``'s.

Served by ``webhooks serve`` at ``GET /metrics`` and by ``webhooks metrics-server``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from .broker.messages import waiting
from .storage.counters import BUCKETS, Counters, Snapshot
from .system import System

__all__ = ["CONTENT_TYPE", "WebhooksCollector", "exposition", "registry"]

CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Series shown at 0 before anything happens, so that rate() and increase() see
#: their first event rather than starting from it.
_ATTEMPTS: list[tuple[str, ...]] = [
    ("succeeded", "none", "2xx"),
    ("failed", "http_status", "5xx"),
    ("failed", "timeout", "none"),
    ("failed", "connect_refused", "none"),
]
_FINISHED = ["delivered", "retries_exhausted"]
_DISABLED = ["gone", "failing"]


def _labelled(counters: Mapping[str, float], prefix: str) -> dict[tuple[str, ...], float]:
    """The counters ``prefix:a:b:...`` as {(a, b, ...): value}."""
    return {
        tuple(name.split(":")[1:]): value
        for name, value in counters.items()
        if name.startswith(prefix + ":")
    }


class WebhooksCollector(Collector):
    """Reads the counters and gauges at each scrape: one Redis round trip and one broker
    query per queue."""

    def __init__(
        self, counters: Counters, queue_depth: Callable[[], int], overdue_after: float
    ) -> None:
        self._counters = counters
        self._queue_depth = queue_depth
        self._overdue_after = overdue_after

    def collect(self) -> Iterator[Metric]:
        snapshot = self._counters.snapshot(self._overdue_after)
        yield from self._counter_families(snapshot.counters)
        yield self._histogram(snapshot.counters)
        yield from self._gauges(snapshot)

    def _counter_families(self, counters: Mapping[str, float]) -> Iterator[Metric]:
        created = CounterMetricFamily(
            "webhooks_deliveries_created", "Deliveries created (one per event and destination)."
        )
        created.add_metric([], counters.get("created", 0.0))
        yield created

        attempts = CounterMetricFamily(
            "webhooks_attempts",
            "Attempts made, by outcome, why they failed, and the class "
            "of the receiver's status code.",
            labels=["outcome", "error_kind", "status_class"],
        )
        seen = _labelled(counters, "attempts")
        for labels in _ATTEMPTS:
            seen.setdefault(labels, 0.0)
        for labels, value in sorted(seen.items()):
            attempts.add_metric(list(labels), value)
        yield attempts

        finished = CounterMetricFamily(
            "webhooks_deliveries_finished",
            "Deliveries that reached a final status.",
            labels=["status"],
        )
        done = _labelled(counters, "finished")
        for status in _FINISHED:
            finished.add_metric([status], done.get((status,), 0.0))
        yield finished

        disabled = CounterMetricFamily(
            "webhooks_endpoints_disabled",
            "Endpoints the workers disabled: gone (410) or "
            "failing (no 2XX for WEBHOOKS_DISABLE_AFTER_SECONDS).",
            labels=["reason"],
        )
        off = _labelled(counters, "endpoints_disabled")
        for reason in _DISABLED:
            disabled.add_metric([reason], off.get((reason,), 0.0))
        yield disabled

        lowered = CounterMetricFamily(
            "webhooks_pace_lowered",
            "Times adaptive pacing lowered a destination's pace (a 429 or 503, a "
            "Retry-After, a timeout or rising latency).",
        )
        lowered.add_metric([], counters.get("pace_lowered", 0.0))
        yield lowered

    def _histogram(self, counters: Mapping[str, float]) -> Metric:
        buckets, cumulative = [], 0.0
        for index, bound in enumerate((*BUCKETS, float("inf"))):
            cumulative += counters.get(f"duration_bucket:{index}", 0.0)
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        return HistogramMetricFamily(
            "webhooks_attempt_duration_seconds",
            "How long attempts took, connect to last byte read.",
            buckets=buckets,
            sum_value=counters.get("duration_sum", 0.0),
        )

    def _gauges(self, snapshot: Snapshot) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "webhooks_queue_depth", "Messages waiting in the broker.", value=self._queue_depth()
        )
        yield GaugeMetricFamily(
            "webhooks_parked", "Retries waiting in Redis for their time.", value=snapshot.parked
        )
        yield GaugeMetricFamily(
            "webhooks_overdue",
            "Unfinished deliveries whose next attempt is more than "
            "WEBHOOKS_RECOVERY_SECONDS late (as webhooks stats counts them).",
            value=snapshot.overdue,
        )
        yield GaugeMetricFamily(
            "webhooks_open_circuits",
            "Destinations whose circuit breaker is open or half-open.",
            value=snapshot.open_circuits,
        )
        yield GaugeMetricFamily(
            "webhooks_paced_destinations",
            "Destinations that adaptive pacing holds below their configured concurrency "
            "or rate limit (each one's pace is in its endpoint's view).",
            value=snapshot.paced,
        )
        yield GaugeMetricFamily(
            "webhooks_archive_backlog",
            "Finished deliveries waiting in Redis to move to the archive "
            "(WEBHOOKS_ARCHIVE_DSN); it grows while PostgreSQL is away.",
            value=snapshot.archive_backlog,
        )


def registry(system: System) -> CollectorRegistry:
    """The registry to expose for ``system``: these metrics only (no per-process ones,
    which would differ from one scrape target to the next)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        WebhooksCollector(
            system.counters,
            lambda: waiting(system.app),
            overdue_after=system.settings.recovery_seconds,
        )
    )
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry's metrics in Prometheus's text format (:data:`CONTENT_TYPE`)."""
    return generate_latest(registry)
