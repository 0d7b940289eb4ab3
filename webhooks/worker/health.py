"""Endpoint health: which failures disable an endpoint.

- A **410 Gone** disables it at once: the receiver says the URL is gone for good.
- **Sustained failure**: no 2XX for ``WEBHOOKS_DISABLE_AFTER_SECONDS`` (5 days)
  while at least one delivery was exhausted meanwhile. The clock starts at the
  first failure after the last 2XX, as Svix's does; requiring an exhausted
  delivery as well keeps an endpoint that fails rarely, and recovers on retry,
  from being disabled by two failures days apart.
"""

from __future__ import annotations

from datetime import timedelta

from ..clock import isoformat, now
from ..models import Attempt, Endpoint
from ..storage.endpoints import EndpointStore

__all__ = ["GONE", "judge"]

GONE = 410


def judge(
    endpoints: EndpointStore,
    endpoint: Endpoint,
    attempt: Attempt,
    exhausted: bool,
    disable_after: timedelta,
) -> str | None:
    """Record the attempt on the endpoint's failure clock; return why to disable it, if so."""
    if attempt.status_code == GONE:
        return "the receiver answered 410 Gone"
    failing_since, exhausted_count = endpoints.record_health(
        endpoint.id, attempt.succeeded, exhausted
    )
    if failing_since is None or exhausted_count == 0:
        return None
    if now() - failing_since < disable_after:
        return None
    return (
        f"no 2XX since {isoformat(failing_since)}, and {exhausted_count} "
        f"deliver{'y' if exhausted_count == 1 else 'ies'} exhausted meanwhile"
    )
