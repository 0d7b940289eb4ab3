"""Every Redis key this package writes, in one place. No key ever contains a secret.

Every key starts with the deployment's ``WEBHOOKS_KEY_PREFIX`` and a colon
(``webhooks:`` by default), so that deployments with different prefixes share a
Redis database without seeing each other's data (their queues differ too: see
``webhooks/broker/config.py``). A :class:`Keys` is made for one prefix and handed
to every store of that deployment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from ..models import DeliveryStatus

__all__ = ["Keys", "template"]


def template(key: Callable[[str], str]) -> str:
    """The key for any id as a Lua ``string.format`` template (``%s`` for the id), for
    the scripts that find an id only in a record they read."""
    return key("\0").replace("%", "%%").replace("\0", "%s")


class Keys:
    """The key names of one deployment, all under its prefix."""

    def __init__(self, prefix: str = "webhooks") -> None:
        self.prefix = prefix
        self._p = prefix + ":"

    def delivery(self, delivery_id: str) -> str:
        """Hash: the delivery's fields and ``body``, the exact bytes POSTed on every attempt."""
        return f"{self._p}delivery:{delivery_id}"

    def attempts(self, delivery_id: str) -> str:
        """List: one JSON Attempt per attempt, in order."""
        return f"{self._p}delivery:{delivery_id}:attempts"

    def deliveries(self, status: DeliveryStatus | None = None) -> str:
        """Sorted set of delivery ids: all of them by creation time, or those in one status by
        ``updated_at`` (when they reached it)."""
        return f"{self._p}deliveries" + (f":{status.value}" if status else "")

    def tenant(self, tenant_id: str) -> str:
        """Hash: the tenant's id, name and creation time."""
        # A tenant's id is the producer's own and may hold ':', so it sits between
        # braces, which no id may contain: no tenant's keys can be read as another's.
        return f"{self._p}tenant:{{{tenant_id}}}"

    def tenants(self) -> str:
        """Sorted set of tenant ids, all scored 0: ordered by id (ZRANGE BYLEX)."""
        return f"{self._p}tenants"

    def tenant_endpoints(self, tenant_id: str) -> str:
        """Set of the tenant's endpoint ids: publishing reads this, not every endpoint."""
        return f"{self.tenant(tenant_id)}:endpoints"

    def tenant_deliveries(self, tenant_id: str, status: DeliveryStatus | None = None) -> str:
        """Sorted set of the tenant's delivery ids: all by creation time, or one status's by
        ``updated_at``."""
        return f"{self.tenant(tenant_id)}:deliveries" + (f":{status.value}" if status else "")

    def tenant_sessions(self, tenant_id: str) -> str:
        """Set of the tenant's portal session keys: deleting the tenant ends them."""
        return f"{self.tenant(tenant_id)}:sessions"

    def session(self, digest: str) -> str:
        """Hash: one web session (role, tenant, CSRF token, expiry), under the SHA-256 of its
        id, so that what Redis holds cannot be used as a cookie."""
        return f"{self._p}session:{digest}"

    def rate_limit(self, name: str, scope: str) -> str:
        """Sorted set: the uses of one rate limit (such as redeliver) by one scope (a
        tenant, between braces as in its own keys), by time."""
        return f"{self._p}limit:{name}:{{{scope}}}"

    def sessions(self) -> str:
        """Sorted set of every session's key by expiry: what revoking them all ends."""
        return f"{self._p}sessions"

    def endpoint(self, endpoint_id: str) -> str:
        """String: the endpoint as JSON, secrets included."""
        return f"{self._p}endpoint:{endpoint_id}"

    def endpoints(self) -> str:
        """Sorted set of endpoint ids by creation time."""
        return f"{self._p}endpoints"

    def endpoint_deliveries(self, endpoint_id: str) -> str:
        """Sorted set of an endpoint's delivery ids by creation time (for recover)."""
        return f"{self._p}endpoint:{endpoint_id}:deliveries"

    def endpoint_health(self, endpoint_id: str) -> str:
        """Hash: ``failing_since`` (first failure after the last 2XX) and ``exhausted``
        since then."""
        return f"{self._p}endpoint:{endpoint_id}:health"

    def broker(self) -> str:
        """String: the broker (password hidden) the store's workers last started with."""
        return f"{self._p}broker"

    def scheduled(self) -> str:
        """Sorted set of task runs waiting for their due time (see :mod:`.schedule`)."""
        return f"{self._p}scheduled"

    def promoting(self) -> str:
        """Sorted set of task runs taken for publishing, by when they were taken."""
        return f"{self._p}promoting"

    def running(self) -> str:
        """Sorted set of claimed attempts, by when the claim lapses."""
        return f"{self._p}running"

    def due(self) -> str:
        """Sorted set of unfinished delivery ids by ``next_attempt_at`` (overdue checks)."""
        return f"{self._p}due"

    def destination_inflight(self, destination: str) -> str:
        """Sorted set of the attempts in flight to one destination, by when their lease ends."""
        return f"{self._p}destination:{destination}:inflight"

    def destination_breaker(self, destination: str) -> str:
        """Hash: a destination's circuit breaker (failures, open_until, cooldown, probing)."""
        return f"{self._p}destination:{destination}:breaker"

    def destination_waiting(self, destination: str) -> str:
        """Sorted set of runs waiting for a slot at a busy destination, oldest first."""
        return f"{self._p}destination:{destination}:waiting"

    def destination_admitted(self, destination: str) -> str:
        """Sorted set of a destination's first runs let out at their creation (a message
        in the broker, not claimed yet), by when; see create_deliveries.lua. Named as
        ``destination_waiting`` with ``admitted`` for ``waiting``: destination.lua
        derives it from the waiting key."""
        return f"{self._p}destination:{destination}:admitted"

    def destination_admit(self, destination: str) -> str:
        """Hash: the first messages of runs held back at their creation, by run member
        (and ``q:<member>``: the broker list to push it onto), for the wake to push."""
        return f"{self._p}destination:{destination}:admit"

    def destination_paced(self, destination: str) -> str:
        """Sorted set of runs that reserved a start time under a destination's rate limit,
        by that time."""
        return f"{self._p}destination:{destination}:paced"

    def destination_throttled(self, destination: str) -> str:
        """Sorted set of runs waiting behind a destination's rate limit for a reservation,
        oldest first."""
        return f"{self._p}destination:{destination}:throttled"

    def metrics(self) -> str:
        """Hash: the cluster's counters (deliveries created and finished, attempts by outcome,
        the attempt-duration histogram, endpoints disabled), written by the same scripts that
        record what they count."""
        return f"{self._p}metrics"

    def activity(self, hour: int) -> str:
        """Hash: every tenant's deliveries and attempts in the hour that starts at ``hour``
        (a Unix time), by outcome, for the console's chart (see :mod:`.activity`)."""
        return f"{self._p}activity:{hour}"

    def tenant_activity(self, tenant_id: str, hour: int) -> str:
        """Hash: the tenant's deliveries and attempts in one hour, by outcome and endpoint
        (``<kind>:<endpoint id>``), for the portal's chart (see :mod:`.activity`)."""
        return f"{self.tenant(tenant_id)}:activity:{hour}"

    def paced_destinations(self) -> str:
        """Sorted set of destinations that adaptive pacing holds below their configured
        limits, by when it last lowered their pace."""
        return f"{self._p}paced-destinations"

    def open_circuits(self) -> str:
        """Sorted set of destinations whose circuit is open or half-open, by when it opened
        until; a success at the destination removes it."""
        return f"{self._p}open-circuits"

    def event_deliveries(self, event_id: str) -> str:
        """Set of the delivery ids of one event (one per destination), for lookups by the
        producer's event id; named by the id's SHA-1, since an event id may hold any
        character but whitespace."""
        return self.event_digest_deliveries(
            hashlib.sha1(event_id.encode(), usedforsecurity=False).hexdigest()
        )

    def event_digest_deliveries(self, digest: str) -> str:
        """:meth:`event_deliveries` by the event id's SHA-1 (what the scripts compute)."""
        return f"{self._p}event:{digest}:deliveries"

    def ordering_chain(self, endpoint_id: str, ordering_key: str) -> str:
        """List of the unfinished delivery ids of one endpoint and one ordering key, in
        publish order: the first is the one being attempted, the others wait behind it.
        Named by the key's SHA-1, since an ordering key may hold any printable character."""
        digest = hashlib.sha1(ordering_key.encode(), usedforsecurity=False).hexdigest()
        return f"{self._p}order:{endpoint_id}:{digest}"

    def archivable(self) -> str:
        """Sorted set of finished delivery ids by when their final attempt was recorded:
        what the archiver moves to PostgreSQL (written by the scripts that finish them)."""
        return f"{self._p}archive:due"

    def archiving(self) -> str:
        """Sorted set of delivery ids an archiver took, by when its claim lapses."""
        return f"{self._p}archive:taken"

    def idempotency(self, bucket: int | str) -> str:
        """Hash of the archived deliveries created in one span of time (``bucket``):
        delivery id -> ``digest:created``, the marker that keeps creating them idempotent
        after their records left Redis. The whole hash expires after the window."""
        return f"{self._p}idempotency:{bucket}"
