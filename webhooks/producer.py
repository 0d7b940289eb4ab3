"""The producer API: create deliveries and publish their task messages.

Every way in ends here, as a method of :class:`Producer`, which works on one
:class:`~webhooks.system.System`: ``deliver.delay(url, event)``
(:meth:`~Producer.deliver_one`), :meth:`~Producer.deliver_many`,
:meth:`~Producer.publish` (fan-out to endpoints), and the replays
:meth:`~Producer.redeliver` and :meth:`~Producer.recover`. The promoter in each
worker publishes due parked runs through :meth:`~Producer.enqueue` too. The
module's functions of the same names do the same on the default System.

Creating is idempotent and, on a Redis broker, atomic:

- A delivery's id follows from its event's id and its destination (the endpoint,
  or the URL), so a call repeated after any error finds the deliveries the first
  one made, and creates nothing twice: the same ids, the same ``webhook-id``.
- When the broker is the store's own Redis, each record and its task message are
  written in one Lua call: both exist or neither does, whatever the connection
  does. On an error, the outcome is unknown and retrying the same call is safe.
- With another broker, records are written first and the messages published
  after; what did not go out is undone (:func:`_enqueue`), and what cannot be
  undone is found by the backstop.

One rule for what did not go out: if the broker does not take a batch of
messages, what the batch was for is undone by its caller's ``undo`` (new records
are deleted, replays are stopped, taken runs are put back), and
:class:`~webhooks.errors.EnqueueFailed` is raised.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from . import tracing
from .broker import messages
from .clock import isoformat, now
from .errors import (
    DeliveryConflict,
    EndpointDisabled,
    EnqueueFailed,
    InvalidEvent,
    InvalidInput,
    WebhooksError,
)
from .events import EVENT_TYPES, Event, encode, event_example, parse_event, unknown_type
from .guard import check_url
from .models import (
    Delivery,
    DeliveryStatus,
    Endpoint,
    Run,
    check_ordering_key,
    check_tenant_id,
)
from .retry import BackoffPolicy
from .signals import OPERATIONAL_TYPES
from .system import System, get_default

__all__ = [
    "Producer",
    "check_event",
    "deliver_many",
    "deliver_one",
    "delivery_id",
    "new_delivery",
    "publish",
    "publish_checked",
    "recover",
    "redeliver",
    "send_test",
]

logger = logging.getLogger(__name__)

_IDS = uuid.UUID("6f1b8f9e-2c1d-4c5a-9a53-3f3f8d7b2e10")  # the namespace of delivery ids

#: Where one delivery goes: a URL, and the endpoint it belongs to (None for a bare URL).
Target = tuple[str, str | None]


def delivery_id(event_id: str, url: str, endpoint_id: str | None) -> str:
    """The id of the delivery of an event to a destination (the endpoint, or the URL for a
    bare one): the same on every call, which is what makes creating it idempotent."""
    destination = f"endpoint\n{endpoint_id}" if endpoint_id else f"url\n{url}"
    return str(uuid.uuid5(_IDS, f"{event_id}\n{destination}"))


def new_delivery(
    event: Event,
    url: str,
    endpoint_id: str | None = None,
    due: datetime | None = None,
    queue: str | None = None,
    created: datetime | None = None,
    tenant_id: str | None = None,
    ordering_key: str | None = None,
) -> Delivery:
    """A ``pending`` delivery of ``event`` to ``url``, not yet stored."""
    created = created or now()
    return Delivery(
        id=delivery_id(event.id, url, endpoint_id),
        url=url,
        tenant_id=tenant_id,
        endpoint_id=endpoint_id,
        event_id=event.id,
        event_type=event.type,
        status=DeliveryStatus.PENDING,
        created_at=created,
        updated_at=created,
        next_attempt_at=due or created,
        queue=queue,
        ordering_key=ordering_key,
    )


class Producer:
    """Creates deliveries in a System's store and publishes their messages through its
    Celery app: every way in, as methods. The module's functions of the same names use
    the default System."""

    def __init__(self, system: System) -> None:
        self._system = system
        self._settings = system.settings

    def encode_checked(self, event: Event) -> bytes:
        """The event's body, refused if larger than ``WEBHOOKS_MAX_PAYLOAD_BYTES``."""
        body = encode(event)
        limit = self._settings.max_payload_bytes
        if len(body) > limit:
            raise InvalidEvent(
                [("event", f"is {len(body):,} bytes encoded; the limit is {limit:,}")]
            )
        return body

    def deliver_one(
        self, url: Any, event: Any, *, due: datetime | None = None, queue: str | None = None
    ) -> str:
        """Deliver ``event`` to ``url`` (what ``deliver.delay(url, event)`` does); returns the
        delivery id. ``due`` delays the first attempt; ``queue`` names the Celery queue.

        A bad URL or event raises :class:`~webhooks.InvalidInput` and writes nothing.
        Calling again with the same event and URL returns the same delivery.
        """
        checked_url, parsed = check_url(url, self._settings), parse_event(event)
        delivery = new_delivery(parsed, checked_url, due=due, queue=queue)
        (created,) = self._create_and_enqueue([delivery], self.encode_checked(parsed), queue, due)
        return created

    def deliver_many(self, items: Iterable[tuple[Any, Any]]) -> list[str]:
        """The bulk form of ``deliver.delay(url, event)``: many (url, event) pairs at once.

        Every pair is validated first; one bad pair raises :class:`~webhooks.InvalidInput`
        naming it (``[3].url``, ``[7].data.screenshot_set.id``) and nothing is written.
        Then all records go in one transaction and all messages in one command.
        """
        deliveries, bodies = [], []
        created = now()  # one batch, one creation time
        checked_urls: dict[Any, str] = {}  # a batch usually goes to a few URLs, checked once each
        for index, (url, event) in enumerate(items):
            try:
                checked = checked_urls.get(url) if isinstance(url, str) else None
                if checked is None:
                    checked = checked_urls[url] = check_url(url, self._settings)
                parsed = parse_event(event)
                bodies.append(self.encode_checked(parsed))
            except InvalidInput as exc:
                raise InvalidInput(f"[{index}].{exc.field}", exc.problem) from None
            deliveries.append(new_delivery(parsed, checked, created=created))
        try:
            return self._create_and_enqueue(deliveries, bodies)
        except DeliveryConflict as conflict:
            index = [delivery.id for delivery in deliveries].index(conflict.delivery_id)
            raise DeliveryConflict(conflict.delivery_id, f"[{index}].id") from None

    def publish(self, event: Any, *, tenant: str, ordering_key: str | None = None) -> list[str]:
        """Validate ``event`` once, create a delivery per enabled endpoint of ``tenant`` whose
        filter matches, enqueue them together, and return the delivery ids.

        ``ordering_key``: for each endpoint, deliveries published with the same key are
        attempted in publish order, each once the one before is delivered or exhausted
        (1 to 256 characters, no control character; a bad one raises
        :class:`~webhooks.InvalidInput` and writes nothing).

        The cost grows with the tenant's own endpoints, never with other tenants'. A
        tenant with no matching endpoint gets an empty list; an unknown one raises
        :class:`~webhooks.TenantNotFound`; an invalid event raises
        :class:`~webhooks.InvalidEvent`. Both write nothing.
        """
        checked = self.check_event(event, tenant)
        return self.publish_checked(*checked, ordering_key=check_ordering_key(ordering_key))

    def check_event(self, event: Any, tenant: Any) -> tuple[Event, bytes, str]:
        """What :func:`publish` checks before it reads anything: the event (parsed, and its
        body within the size limit) and the tenant id. For the helpers that publish
        later (on commit, from an outbox): a bad event fails where it was written."""
        parsed = parse_event(event)
        return parsed, self.encode_checked(parsed), check_tenant_id(tenant)

    def publish_checked(
        self, parsed: Event, body: bytes, tenant: str, ordering_key: str | None = None
    ) -> list[str]:
        """:func:`publish` of an event :func:`check_event` passed (and of an ordering key
        :func:`~webhooks.models.check_ordering_key` passed)."""
        created = now()
        endpoints = self._system.endpoints.all(tenant)
        deliveries = [
            new_delivery(
                parsed,
                endpoint.url,
                endpoint.id,
                created=created,
                tenant_id=tenant,
                ordering_key=ordering_key,
            )
            for endpoint in endpoints
            if endpoint.accepts(parsed.type)
        ]
        return self._create_and_enqueue(deliveries, body)

    def test_event(
        self, endpoint_id: str, event_type: str | None = None, *, tenant: str | None = None
    ) -> tuple[Delivery, bytes]:
        """The test of an endpoint, checked but not stored (:meth:`send_test` sends it):
        the catalog's example of ``event_type`` (default: the endpoint's first type, or
        the first registered one for an endpoint that takes every type), exactly as the
        catalog shows it, as a delivery marked ``test`` with an id of its own.

        Refused, writing nothing: another tenant's endpoint or a missing one
        (:class:`~webhooks.NotFound`), a disabled one
        (:class:`~webhooks.EndpointDisabled`), a type that is not registered, that the
        endpoint does not take, or whose model gives no example
        (:class:`~webhooks.InvalidInput` naming ``event_type``)."""
        endpoint: Endpoint = self._system.endpoints.get(endpoint_id, tenant)
        if not endpoint.enabled:
            raise EndpointDisabled(endpoint.id, endpoint.disabled_reason)
        name = event_type
        if name is None:
            name = endpoint.event_types[0] if endpoint.event_types else min(EVENT_TYPES)
        if name not in EVENT_TYPES:
            raise InvalidInput("event_type", unknown_type(name))
        if not endpoint.accepts(name):
            taken = ", ".join(endpoint.event_types or ())
            raise InvalidInput(
                "event_type", f"the endpoint does not take {name!r}; it takes: {taken}"
            )
        example = event_example(name)
        if example is None:
            raise InvalidInput(
                "event_type",
                f"{name!r} has no example to send: its model needs "
                "json_schema_extra={'examples': [...]}",
            )
        parsed = parse_event(example)
        delivery = new_delivery(parsed, endpoint.url, endpoint.id, tenant_id=endpoint.tenant_id)
        # The example exactly as the catalog shows it, under a delivery id of its own
        # (so a webhook-id of its own): a delivery's id comes from its event's, and each
        # test is a new delivery, never the previous test answered again.
        test = delivery.model_copy(update={"id": str(uuid.uuid4()), "test": True})
        return test, self.encode_checked(parsed)

    def send_test(
        self, endpoint_id: str, event_type: str | None = None, *, tenant: str | None = None
    ) -> str:
        """Send the endpoint a test event (:meth:`test_event`) as a real delivery: signed,
        recorded and retried like any other; returns its id."""
        return self.send_made_test(*self.test_event(endpoint_id, event_type, tenant=tenant))

    def send_made_test(self, delivery: Delivery, body: bytes) -> str:
        """Store and enqueue a test :meth:`test_event` made."""
        (sent,) = self._create_and_enqueue([delivery], body)
        return sent

    def notify(self, url: str, kind: str, subject: str, data: dict[str, Any]) -> str:
        """Send an operational webhook (``delivery.exhausted``, ``endpoint.disabled``,
        ``delivery.recovered``) to the operator's ``url``, as a delivery like any other;
        returns its id. ``subject`` names the one occurrence (a delivery and its attempt,
        an endpoint and when it was disabled): announcing it twice sends it once."""
        if kind not in OPERATIONAL_TYPES:
            raise InvalidInput("type", f"not an operational webhook type: {kind!r}")
        message_id = "op_" + uuid.uuid5(_IDS, f"{kind}\n{subject}").hex
        created = now()
        body = json.dumps(
            {"type": kind, "id": message_id, "timestamp": isoformat(created), "data": data},
            separators=(",", ":"),
        ).encode()
        delivery = Delivery(
            id=delivery_id(message_id, url, None),
            url=check_url(url, self._settings),
            event_id=message_id,
            event_type=kind,
            status=DeliveryStatus.PENDING,
            created_at=created,
            updated_at=created,
            next_attempt_at=created,
        )
        (sent,) = self._create_and_enqueue([delivery], body)
        return sent

    def redeliver(self, delivery_id: str, *, tenant: str | None = None) -> None:
        """Start a new attempt cycle for any delivery, whatever its status.

        The ``webhook-id`` stays the same, earlier attempts are kept, and the new
        attempts are numbered on from them. Messages of the old cycle still waiting
        in Celery are dropped when they come due. With ``tenant``, another tenant's
        delivery is not found, exactly as a missing one is.
        """
        self._check_endpoint(self._system.deliveries.get(delivery_id, tenant).endpoint_id)
        self._restart([delivery_id])

    def recover(
        self,
        endpoint_id: str,
        since: datetime,
        until: datetime | None = None,
        *,
        tenant: str | None = None,
    ) -> list[str]:
        """Redeliver every ``retries_exhausted`` delivery of the endpoint created in the window,
        archived ones included. With ``tenant``, another tenant's endpoint is not found,
        as a missing one is."""
        self._check_endpoint(self._system.endpoints.get(endpoint_id, tenant).id)
        return self._restart(self._system.deliveries.exhausted(endpoint_id, since, until or now()))

    def enqueue(
        self,
        runs: Sequence[Run],
        queue: str | None = None,
        *,
        undo: Callable[[list[str]], object] | None = None,
        due: datetime | None = None,
        contexts: messages.Contexts | None = None,
    ) -> None:
        """Publish the messages of stored deliveries' runs (parked instead, when ``due`` is
        far enough off for the retry policy to park it); on failure, ``undo`` the ids and
        raise :class:`~webhooks.errors.EnqueueFailed`. ``contexts``: each run's trace
        context, when not the current one."""
        self._enqueue(runs, queue, undo or (lambda _: None), due, contexts)

    def _create_and_enqueue(
        self,
        deliveries: Sequence[Delivery],
        body: bytes | Sequence[bytes],
        queue: str | None = None,
        due: datetime | None = None,
    ) -> list[str]:
        """Store the deliveries that are new, each with its first run; returns every id."""
        store, ids = self._system.deliveries, [delivery.id for delivery in deliveries]
        if not deliveries:
            return ids
        countdown = (due - now()).total_seconds() if due is not None else 0.0
        eta = due if countdown > 0 else None
        # Where each first run goes: parked in Redis when far off (the promoter publishes
        # it when due), its message in the same Lua call when the broker's list lives in
        # the store's Redis, or published after the records by another broker.
        parked = (
            due is not None and BackoffPolicy.from_settings(self._settings).wait(countdown).parked
        )
        target = (
            None
            if parked
            else messages.store_list(self._system.app, queue, self._settings.redis_url)
        )
        push = None
        if target is not None:
            name, key = target
            push = (key, messages.encode(self._system.app, [Run(i) for i in ids], name, eta))
        context = tracing.carrier()  # kept with the records, for runs published later
        try:
            existing = store.create_many(
                deliveries,
                body,
                push=push,
                park_at=due.timestamp() if parked and due else None,
                trace=json.dumps(context) if context else "",
            )
        except WebhooksError:
            raise
        except Exception as error:
            raise EnqueueFailed(
                f"could not write {len(ids)} deliveries to Redis ({error}); the "
                "outcome is unknown, and retrying the same call is safe"
            ) from error
        if not parked and push is None:
            # Another broker: what does not go out is undone, and a retry is safe.
            self._enqueue([Run(i) for i in ids if i not in existing], queue, store.delete_many, eta)
        return ids

    def _restart(self, delivery_ids: list[str]) -> list[str]:
        store = self._system.deliveries
        runs = [Run(delivery_id, store.start_cycle(delivery_id)) for delivery_id in delivery_ids]
        self._enqueue(
            runs,
            None,
            lambda ids: store.stop_unfinished(ids, "replay could not be enqueued; run it again"),
            None,
        )
        return delivery_ids

    def _enqueue(
        self,
        runs: Sequence[Run],
        queue: str | None,
        undo: Callable[[list[str]], object],
        due: datetime | None,
        contexts: messages.Contexts | None = None,
    ) -> None:
        """The one rule: publish the runs' messages, or undo what they were for and raise."""
        if not runs:
            return
        countdown = (due - now()).total_seconds() if due is not None else 0.0
        try:
            if (
                due is not None
                and BackoffPolicy.from_settings(self._settings).wait(countdown).parked
            ):
                # Far off: the run waits in Redis, and the promoter publishes it when due.
                self._system.schedule.park_nx(runs, due.timestamp())
            else:
                messages.publish(
                    self._system.app,
                    runs,
                    queue,
                    eta=due if countdown > 0 else None,
                    contexts=contexts,
                )
        except Exception as exc:
            ids = [run.delivery_id for run in runs]
            try:
                undo(ids)
            except Exception:
                logger.exception("could not undo %d runs that were not published", len(ids))
                raise EnqueueFailed(
                    f"could not publish {len(ids)} messages ({exc}), and undoing "
                    "what they were for failed too"
                ) from exc
            raise EnqueueFailed(
                f"could not publish {len(ids)} messages ({exc}); what they were "
                "for was undone, and retrying the same call is safe"
            ) from exc

    def _check_endpoint(self, endpoint_id: str | None) -> None:
        if endpoint_id is not None:
            endpoint = self._system.endpoints.get(endpoint_id)
            if not endpoint.enabled:
                raise EndpointDisabled(endpoint.id, endpoint.disabled_reason)


# The producer API on the default System, as the package documents it.


def deliver_one(
    url: Any, event: Any, *, due: datetime | None = None, queue: str | None = None
) -> str:
    """:meth:`Producer.deliver_one` on the default System: what ``deliver.delay(url, event)``
    does."""
    return Producer(get_default()).deliver_one(url, event, due=due, queue=queue)


def deliver_many(items: Iterable[tuple[Any, Any]]) -> list[str]:
    """:meth:`Producer.deliver_many` on the default System."""
    return Producer(get_default()).deliver_many(items)


def publish(event: Any, *, tenant: str, ordering_key: str | None = None) -> list[str]:
    """:meth:`Producer.publish` on the default System."""
    return Producer(get_default()).publish(event, tenant=tenant, ordering_key=ordering_key)


def check_event(event: Any, tenant: Any) -> tuple[Event, bytes, str]:
    """:meth:`Producer.check_event` on the default System."""
    return Producer(get_default()).check_event(event, tenant)


def publish_checked(
    parsed: Event, body: bytes, tenant: str, ordering_key: str | None = None
) -> list[str]:
    """:meth:`Producer.publish_checked` on the default System."""
    return Producer(get_default()).publish_checked(parsed, body, tenant, ordering_key)


def redeliver(delivery_id: str, *, tenant: str | None = None) -> None:
    """:meth:`Producer.redeliver` on the default System."""
    Producer(get_default()).redeliver(delivery_id, tenant=tenant)


def recover(
    endpoint_id: str, since: datetime, until: datetime | None = None, *, tenant: str | None = None
) -> list[str]:
    """:meth:`Producer.recover` on the default System."""
    return Producer(get_default()).recover(endpoint_id, since, until, tenant=tenant)


def send_test(endpoint_id: str, event_type: str | None = None, *, tenant: str | None = None) -> str:
    """:meth:`Producer.send_test` on the default System."""
    return Producer(get_default()).send_test(endpoint_id, event_type, tenant=tenant)
