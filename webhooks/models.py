"""The product's nouns: a Tenant, its Endpoints, a Delivery and its Attempts, and a Run
of the task.

These are what the store keeps and what ``--json`` prints; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .clock import UTCDatetime
from .errors import InvalidInput
from .ids import is_tenant_id
from .signing import mask

__all__ = [
    "FINAL_STATUSES",
    "RESPONSE_BODY_LIMIT",
    "SEALED_PREFIX",
    "Attempt",
    "AttemptError",
    "Delivery",
    "DeliveryStatus",
    "Endpoint",
    "EndpointSecret",
    "ErrorKind",
    "Run",
    "Tenant",
    "check_ordering_key",
    "check_tenant_id",
]


def check_tenant_id(value: object, field: str = "tenant") -> str:
    """``value`` if it is a tenant id: the producer's own id for a customer, such as
    ``acct_42`` (a letter or digit, then up to 127 of letters, digits and ``_.:-``)."""
    if not isinstance(value, str) or not is_tenant_id(value):
        raise InvalidInput(
            field,
            "a tenant id is 1 to 128 letters, digits and _.:- starting with a letter or digit",
        )
    return value


#: The longest ordering key, in characters.
ORDERING_KEY_LIMIT = 256


def check_ordering_key(value: object, field: str = "ordering_key") -> str | None:
    """``value`` if it is an ordering key (None: the delivery keeps no order): 1 to 256
    characters, none of them a control character (C0, DEL or C1)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInput(field, f"an ordering key is 1 to {ORDERING_KEY_LIMIT} characters")
    if len(value) > ORDERING_KEY_LIMIT:
        raise InvalidInput(
            field, f"is {len(value):,} characters; the limit is {ORDERING_KEY_LIMIT}"
        )
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
        raise InvalidInput(field, "an ordering key may not hold control characters")
    return value


#: How much of a receiver's answer is kept with each attempt.
RESPONSE_BODY_LIMIT = 4096


class DeliveryStatus(StrEnum):
    """Where a delivery stands; the last two are final."""

    PENDING = "pending"  # created, first attempt not yet finished
    RETRYING = "retrying"  # at least one attempt failed; another is scheduled
    DELIVERED = "delivered"  # a 2XX answer was received
    # No more attempts will be made: 15 failed, or its endpoint was disabled or
    # deleted, or a replay could not be enqueued (stop_reason says which).
    RETRIES_EXHAUSTED = "retries_exhausted"


FINAL_STATUSES = frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.RETRIES_EXHAUSTED})


class ErrorKind(StrEnum):
    """Why an attempt failed, in a word to group and alert on."""

    HTTP_STATUS = "http_status"  # an answer that is not 2XX (3XX included: never followed)
    CONNECT_REFUSED = "connect_refused"
    DNS = "dns"
    TLS = "tls"
    TIMEOUT = "timeout"  # connect, read, or the whole attempt's deadline
    CONNECTION_RESET = "connection_reset"
    CONNECTION_ERROR = "connection_error"
    REQUEST_ERROR = "request_error"
    BLOCKED_DESTINATION = "blocked_destination"  # the guard refused the address
    # WEBHOOKS_EGRESS_PROXY could not be reached or did not open the tunnel: nothing
    # reached the receiver, and nothing was tried without the proxy.
    PROXY_ERROR = "proxy_error"
    # The endpoint's secret or a header value is stored encrypted under a key that
    # WEBHOOKS_ENCRYPTION_KEYS lacks: nothing was sent.
    SECRET_UNREADABLE = "secret_unreadable"


class AttemptError(BaseModel):
    """Why an attempt failed: a short ``kind`` to group on, and a message for people."""

    model_config = ConfigDict(frozen=True)

    kind: ErrorKind
    message: str


class Attempt(BaseModel):
    """One POST of a delivery's body, as it went."""

    model_config = ConfigDict(frozen=True)

    number: int
    started_at: UTCDatetime
    duration_ms: float
    status_code: int | None
    error: AttemptError | None
    response_body: str

    @property
    def succeeded(self) -> bool:
        return self.error is None

    @property
    def outcome(self) -> str:
        """``succeeded`` or ``failed``: how metrics, logs and traces name it."""
        return "succeeded" if self.succeeded else "failed"

    @property
    def error_kind(self) -> str:
        """Why it failed (an :class:`ErrorKind` value), or ``none``."""
        return self.error.kind.value if self.error is not None else "none"


class Tenant(BaseModel):
    """One of the producer's customers, named by the producer's own id."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str = ""
    created_at: UTCDatetime


class Delivery(BaseModel):
    """One event on its way to one URL, with every attempt made so far."""

    id: str
    url: str
    tenant_id: str | None = None  # None: a bare-URL delivery (deliver.delay)
    endpoint_id: str | None = None
    event_id: str
    event_type: str
    status: DeliveryStatus
    created_at: UTCDatetime
    updated_at: UTCDatetime
    next_attempt_at: UTCDatetime | None
    attempts: list[Attempt] = []
    # Sent by a test (POST .../endpoints/{id}/test): the catalog's example, not an event
    # the producer published; its attempts carry ``webhook-test: true``.
    test: bool = False
    # Published with an ordering key: for its endpoint and key, attempts are made in
    # publish order, each delivery after the one before is delivered or exhausted.
    ordering_key: str | None = None
    # The delivery before it of its ordering key, while it waits for that one to finish.
    waiting_behind: str | None = None
    # Kept in the store but not in the delivery's JSON, whose keys are a contract.
    cycle: int = Field(0, exclude=True)  # bumped by redeliver; stale messages carry an older one
    cycle_offset: int = Field(0, exclude=True)  # attempts made before this cycle began
    stop_reason: str | None = Field(None, exclude=True)  # why retries stopped early, if they did
    queue: str | None = Field(None, exclude=True)  # the Celery queue, when not the default

    def attempt_number(self, retries: int) -> int:
        """The number of the attempt that Celery retry ``retries`` of this cycle makes."""
        return self.cycle_offset + retries + 1


@dataclass(frozen=True)
class Run:
    """One run of the delivery task: the attempt after ``retries`` retries of a cycle.

    It is what a task message carries (the delivery id and the cycle as arguments,
    ``retries`` in Celery's header) and, as ``member``, what the schedule holds.
    """

    delivery_id: str
    cycle: int = 0
    retries: int = 0

    @property
    def member(self) -> str:
        return f"{self.delivery_id}:{self.cycle}:{self.retries}"

    @classmethod
    def parse(cls, member: str | bytes) -> Run:
        text = member.decode() if isinstance(member, bytes) else member
        delivery_id, cycle, retries = text.rsplit(":", 2)
        return cls(delivery_id, int(cycle), int(retries))

    def next(self) -> Run:
        return Run(self.delivery_id, self.cycle, self.retries + 1)


#: What starts a signing secret or header value stored encrypted (the Fernet token
#: follows). A NUL never starts a value in clear: header values refuse it at the door
#: and secrets start with ``whsec_``, so a value is told apart from its prefix alone.
SEALED_PREFIX = "\x00fernet:"

#: How a value that no key decrypts is shown in place of its mask.
_UNREADABLE = "(unreadable: no key of WEBHOOKS_ENCRYPTION_KEYS decrypts it)"


class EndpointSecret(BaseModel):
    """A signing secret; one that a newer secret replaced signs until ``expires_at``."""

    model_config = ConfigDict(frozen=True)

    value: str
    created_at: UTCDatetime
    expires_at: UTCDatetime | None = None

    def active(self, at: datetime) -> bool:
        return self.expires_at is None or self.expires_at > at


class Endpoint(BaseModel):
    """Where a customer wants events, which types, the headers to send along, and the
    secrets that sign them."""

    id: str
    tenant_id: str | None = None  # None: registered before endpoints had owners
    url: str
    description: str = ""
    event_types: list[str] | None = None  # None: every event type
    enabled: bool = True
    disabled_reason: str | None = None
    disabled_at: UTCDatetime | None = None
    created_at: UTCDatetime
    headers: dict[str, str] = {}  # sent with every attempt; values are masked when shown
    secrets: list[EndpointSecret]
    rate_limit: float | None = None  # attempts a second, across all workers; None: no limit

    def accepts(self, event_type: str) -> bool:
        return self.enabled and (self.event_types is None or event_type in self.event_types)

    def signing_secrets(self, at: datetime) -> list[str]:
        return [secret.value for secret in self.secrets if secret.active(at)]

    def unreadable(self, at: datetime) -> bool:
        """Whether a secret that signs at ``at``, or a header value, is still encrypted:
        read under keys that cannot decrypt it, so the endpoint cannot be sent to."""
        values = [*self.signing_secrets(at), *self.headers.values()]
        return any(value.startswith(SEALED_PREFIX) for value in values)

    def public(self) -> dict[str, Any]:
        """The endpoint as shown to people and scripts: secrets and header values masked
        (a header may carry the customer's own credentials)."""
        shown = self.model_dump(mode="json", exclude={"secrets"})
        shown["headers"] = {
            name: _UNREADABLE if value.startswith(SEALED_PREFIX) else f"… ({len(value)} characters)"
            for name, value in self.headers.items()
        }
        shown["secrets"] = [
            {
                "secret": _UNREADABLE if s.value.startswith(SEALED_PREFIX) else mask(s.value),
                **s.model_dump(mode="json", exclude={"value"}),
            }
            for s in self.secrets
        ]
        return shown
