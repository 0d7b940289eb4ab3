"""The exceptions this package raises, all under one base.

WebhooksError
├── InvalidInput            bad input from a producer or the CLI; names the field
│   ├── InvalidEvent        the event does not match its registered model
│   ├── InvalidURL          the destination URL is not acceptable
│   ├── DeliveryConflict    the event's id was sent to the same place with another body
│   ├── TenantExists        a tenant with that id is registered already
│   └── DeliveryFinished    the delivery is delivered or exhausted already (skip)
├── NotFound
│   ├── DeliveryNotFound    no delivery with that id (never created, or expired)
│   ├── EndpointNotFound    no endpoint with that id
│   └── TenantNotFound      no tenant with that id
├── EndpointDisabled        the endpoint is disabled, so nothing is sent to it
├── EnqueueFailed           messages could not be published; what they were for is undone
├── ArchiveUnavailable      a read needs the PostgreSQL archive, which did not answer
├── BlockedDestination      an attempt's destination resolved to a forbidden address
├── TokenInvalid            a portal token that is not ours, was altered, or expired
├── MissingExtra            what was asked for needs an extra that is not installed
└── WebhookVerificationFailed
                            a received webhook's signature or timestamp did not verify
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ArchiveUnavailable",
    "BlockedDestination",
    "DeliveryConflict",
    "DeliveryFinished",
    "DeliveryNotFound",
    "EndpointDisabled",
    "EndpointNotFound",
    "EnqueueFailed",
    "InvalidEvent",
    "InvalidInput",
    "InvalidURL",
    "MissingExtra",
    "NotFound",
    "TenantExists",
    "TenantNotFound",
    "TokenInvalid",
    "WebhookVerificationFailed",
    "WebhooksError",
]


#: How much of a value taken from the input an error message repeats.
SHOWN = 100


def _printable(text: str, limit: int = 2000) -> str:
    """``text`` fit for one line: control characters escaped, and cut if it is long
    (it comes from the input, which may be anything)."""
    shown = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text[:limit])
    return shown if len(text) <= limit else f"{shown}… ({len(text):,} characters)"


def _quoted(value: str) -> str:
    """A value from the input, quoted (repr escapes what is not printable) and cut to
    :data:`SHOWN` characters."""
    shown = repr(value[:SHOWN])
    return shown if len(value) <= SHOWN else f"{shown}… ({len(value):,} characters)"


class WebhooksError(Exception):
    """Base class of every error raised by this package."""


class InvalidInput(WebhooksError, ValueError):
    """Input was refused before anything was enqueued or written.

    ``field`` is the dotted path of the offending value (``"url"``,
    ``"data.screenshot_set.screenshots.0.status"``) so the message can be shown
    to a person as one line.
    """

    def __init__(self, field: str, problem: str) -> None:
        # Keys and values come from the input: escape what would break the line.
        self.field = _printable(field, SHOWN)
        self.problem = _printable(problem)
        super().__init__(f"{self.field}: {self.problem}")


class InvalidEvent(InvalidInput):
    """The event failed validation; ``problems`` holds every (field, problem) found."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = list(problems)
        field, problem = self.problems[0]
        more = len(self.problems) - 1
        if more:
            problem = f"{problem} (and {more} more problem{'s' if more > 1 else ''})"
        super().__init__(field, problem)


class InvalidURL(InvalidInput):
    """The destination URL was refused."""

    def __init__(self, problem: str) -> None:
        super().__init__("url", problem)


class DeliveryConflict(InvalidInput):
    """A delivery of this event to this destination exists with another body.

    Creating a delivery is idempotent by (event id, destination), so a producer
    may retry any call; an event id that names two different events is refused.
    """

    def __init__(self, delivery_id: str, field: str = "id") -> None:
        self.delivery_id = delivery_id
        super().__init__(
            field,
            f"this event id was already sent to this destination with "
            f"another body (delivery {delivery_id}); an event id must "
            f"name one event",
        )


class NotFound(WebhooksError, LookupError):
    """Nothing is stored under this id."""


class DeliveryNotFound(NotFound):
    """No delivery record has this id: it was never created or its retention ran out."""

    def __init__(self, delivery_id: str) -> None:
        self.delivery_id = delivery_id
        super().__init__(f"no delivery with id {_quoted(delivery_id)}")


class EndpointNotFound(NotFound):
    """No endpoint has this id."""

    def __init__(self, endpoint_id: str) -> None:
        self.endpoint_id = endpoint_id
        super().__init__(f"no endpoint with id {_quoted(endpoint_id)}")


class EndpointDisabled(WebhooksError):
    """The endpoint is disabled, so a replay to it is refused until it is enabled."""

    def __init__(self, endpoint_id: str, reason: str | None) -> None:
        self.endpoint_id = endpoint_id
        self.reason = reason
        super().__init__(
            f"endpoint {endpoint_id} is disabled ({reason or 'no reason given'}); enable it first"
        )


class EnqueueFailed(WebhooksError):
    """The broker did not take the messages; what was written for them was undone."""


class ArchiveUnavailable(WebhooksError):
    """A read that needs the PostgreSQL archive could not reach it; nothing partial is
    shown in its place."""


class TenantNotFound(NotFound):
    """No tenant has this id."""

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        super().__init__(f"no tenant with id {_quoted(tenant_id)}")


class TenantExists(InvalidInput):
    """A tenant with this id is registered already."""

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        super().__init__("id", f"a tenant with id {_quoted(tenant_id)} exists already")


class DeliveryFinished(InvalidInput):
    """The delivery is delivered or exhausted already: there is nothing to skip."""

    def __init__(self, delivery_id: str, status: str) -> None:
        self.delivery_id = delivery_id
        super().__init__(
            "id",
            f"delivery {delivery_id} is {status} already; only an unfinished delivery "
            "can be skipped",
        )


class BlockedDestination(WebhooksError):
    """The destination is, or resolves to, an address deliveries must not reach."""


class TokenInvalid(WebhooksError):
    """A portal token that is not ours, was tampered with, or has expired."""


class MissingExtra(WebhooksError, ImportError):
    """What was asked for needs one of the package's extras, which is not installed."""

    def __init__(self, extra: str, what: str) -> None:
        self.extra = extra
        super().__init__(
            f"{what} needs the {extra!r} extra, which is not installed: "
            f"pip install 'celery-webhooks[{extra}]'"
        )


class WebhookVerificationFailed(WebhooksError):
    """A received webhook did not verify: wrong signature, bad or stale timestamp, missing header.

    The message says which, and never contains the secret or the signatures.
    """
