"""UTC time, the one way this package reads and writes it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, PlainSerializer

__all__ = ["UTCDatetime", "at", "isoformat", "now"]


def now() -> datetime:
    return datetime.now(UTC)


def at(timestamp: float) -> datetime:
    """The moment of a Unix timestamp, as Redis scores keep them."""
    return datetime.fromtimestamp(timestamp, UTC)


def isoformat(moment: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix, the form every time in our JSON takes."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


#: A timezone-aware datetime, normalised to UTC and written as ISO-8601 with ``Z``.
UTCDatetime = Annotated[
    AwareDatetime,
    AfterValidator(lambda moment: moment.astimezone(UTC)),
    PlainSerializer(isoformat, return_type=str),
]
