"""What a delivery and its attempts look like, in the store and in ``--json`` output."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from .clock import UTCDatetime

__all__ = ["FINAL_STATUSES", "Attempt", "AttemptError", "Delivery", "DeliveryStatus"]

#: How much of a receiver's answer is kept with each attempt.
RESPONSE_BODY_LIMIT = 4096


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # created, first attempt not yet finished
    RETRYING = "retrying"  # at least one attempt failed; another is scheduled
    DELIVERED = "delivered"  # a 2XX answer was received
    RETRIES_EXHAUSTED = "retries_exhausted"  # 15 attempts failed; no more will be made


FINAL_STATUSES = frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.RETRIES_EXHAUSTED})


class AttemptError(BaseModel):
    """Why an attempt failed: a short ``kind`` to group on, and a message for people.

    Kinds: ``http_status``, ``connect_refused``, ``dns``, ``tls``, ``timeout``,
    ``connection_reset``, ``connection_error``, ``request_error``.
    """

    model_config = ConfigDict(frozen=True)

    kind: str
    message: str


class Attempt(BaseModel):
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


class Delivery(BaseModel):
    """One event on its way to one URL, with every attempt made so far."""

    id: str
    url: str
    event_id: str
    event_type: str
    status: DeliveryStatus
    created_at: UTCDatetime
    updated_at: UTCDatetime
    next_attempt_at: UTCDatetime | None
    attempts: list[Attempt] = []
    # Kept in the store but not in the delivery's JSON, whose keys are a contract.
    endpoint_id: str | None = Field(None, exclude=True)
    cycle: int = Field(0, exclude=True)  # bumped by redeliver; stale messages carry an older one
    cycle_offset: int = Field(0, exclude=True)  # attempts made before this cycle began
    stop_reason: str | None = Field(None, exclude=True)  # why retries stopped early, if they did
    queue: str | None = Field(None, exclude=True)  # the Celery queue, when not the default

    def attempt_number(self, retries: int) -> int:
        """The number of the attempt that Celery retry ``retries`` of this cycle makes."""
        return self.cycle_offset + retries + 1
