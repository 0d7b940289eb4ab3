"""UTC time, the one way this package reads and writes it."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, PlainSerializer

__all__ = ["UTCDatetime", "at", "isoformat", "lease_end", "now"]


def now() -> datetime:
    return datetime.now(UTC)


def at(timestamp: float) -> datetime:
    """The moment of a Unix timestamp, as Redis scores keep them."""
    return datetime.fromtimestamp(timestamp, UTC)


def lease_end(start: float, seconds: float, keep: float) -> float:
    """When a lease of ``seconds`` taken at ``start`` (a Unix timestamp) ends, as the
    score of an attempt's claim and of its destination slot: rounded down to a whole
    second when the lease still lasts ``keep`` seconds so, and exact otherwise. Never
    later than ``start + seconds``, so WEBHOOKS_RECOVERY_SECONDS stays the bound; never
    sooner than ``start + keep``, so a live attempt is not run twice.

    Those sorted sets are small, and Redis keeps a small one as a listpack, where an
    integer score is stored as an integer but any other is printed (``%.17g``) as it is
    added and parsed again (``strtod``) for each member a later add or range walks past:
    2.6 % of Redis's instructions per delivery (``python -m bench.instructions``)."""
    end = start + seconds
    whole = math.floor(end)
    return whole if whole >= start + keep else end


def isoformat(moment: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix, the form every time in our JSON takes."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _in_utc(moment: datetime) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01 with a positive offset, 9999-12-31 with a negative
        raise ValueError("is outside the years 1 to 9999 in UTC") from None


#: A timezone-aware datetime, normalised to UTC and written as ISO-8601 with ``Z``.
UTCDatetime = Annotated[
    AwareDatetime,
    AfterValidator(_in_utc),
    PlainSerializer(isoformat, return_type=str),
]
