"""The events we send, in the words of the webhooks reference.

A new event type is a model plus a name: subclass :class:`Event`, give it a
``type`` literal and a ``data`` model, and decorate it with :func:`event_type`.
Nothing else in the package branches on the type.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from functools import reduce
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from .clock import UTCDatetime
from .errors import InvalidEvent

__all__ = [
    "EVENT_TYPES",
    "Ad",
    "AdStatus",
    "Event",
    "Screenshot",
    "ScreenshotSet",
    "ScreenshotSetApproved",
    "ScreenshotSetApprovedData",
    "ScreenshotStatus",
    "encode",
    "event_schema",
    "event_type",
    "loads_event",
    "parse_event",
]

#: How deep objects and arrays may nest in an event's JSON (the events here nest 7 deep).
MAX_DEPTH = 32


_ABSOLUTE_HTTP = re.compile(r"(?i:https?)://[^/?#@\s]+(?:[/?#]\S*)?", re.ASCII)


def _http_url(value: str) -> str:
    # Kept as the producer wrote it: pydantic's HttpUrl would rewrite it (a trailing
    # slash, punycode), and receivers compare these strings. A regular expression,
    # not urlsplit: events carry many URLs and bulk publishing validates them all.
    if not _ABSOLUTE_HTTP.fullmatch(value):
        raise ValueError("must be an absolute http(s) URL")
    return value


Id = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^\S+$")]
HttpURL = Annotated[str, Field(max_length=2048), AfterValidator(_http_url)]


class _Strict(BaseModel):
    """A frozen model that refuses unknown keys."""

    # Unknown keys are refused so that a typo in a producer shows up at once
    # instead of silently dropping a field the receiver was promised.
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdStatus(StrEnum):
    """What happened when the ad creative was loaded."""

    UPLOADED = "uploaded"  # the ad creative was captured successfully
    NOT_FOUND = "not_found"  # the creative asset could not be found when loading the ad
    NET_READ_TIMEOUT = "net_read_timeout"  # network issues while loading the ad
    GENERIC_ERROR = "generic_error"  # another error while loading the ad


class ScreenshotStatus(StrEnum):
    """What happened when the screenshot was generated."""

    UPLOADED = "uploaded"  # the screenshot was generated successfully
    AD_NOT_CAPTURED = "ad_not_captured"  # the ad was not captured, so no screenshot
    NET_READ_TIMEOUT = "net_read_timeout"  # network issues while generating it
    NO_SLOTS_FOUND = "no_slots_found"  # the site had no ad slot matching the ad's dimensions
    SITE_UNREACHABLE = "site_unreachable"  # the requested site was not reachable
    SSL_ERROR = "ssl_error"  # an SSL error while generating it
    GENERIC_ERROR = "generic_error"  # another error while capturing it


class Ad(_Strict):
    """The ad creative placed in the screenshot."""

    id: Id = Field(description="Identifier of the ad.")
    status: AdStatus = Field(description="Outcome of loading the ad creative.")
    name: str | None = Field(None, max_length=500, description="Human-readable name of the ad.")
    creative_url: HttpURL | None = Field(
        None, description="Where the creative asset was loaded from."
    )


class Screenshot(_Strict):
    """One screenshot of the set: the ad shown on one site."""

    id: Id = Field(description="Identifier of the screenshot.")
    status: ScreenshotStatus = Field(description="Outcome of generating the screenshot.")
    ad: Ad = Field(description="The ad this screenshot shows.")
    site_url: HttpURL | None = Field(None, description="The page the screenshot was taken on.")
    download_url: HttpURL | None = Field(
        None,
        description="Where to download the image. Present whenever status is 'uploaded'.",
    )
    captured_at: UTCDatetime | None = Field(
        None, description="When the screenshot was taken (UTC, ISO-8601)."
    )

    @model_validator(mode="after")
    def _uploaded_has_download_url(self) -> Screenshot:
        # "Ready for download" is the point of the event: an uploaded screenshot
        # with nothing to download would leave the receiver stuck.
        if self.status is ScreenshotStatus.UPLOADED and self.download_url is None:
            raise ValueError("download_url is required when status is 'uploaded'")
        return self


class ScreenshotSet(_Strict):
    """A set of screenshots approved together."""

    id: Id = Field(description="Identifier of the screenshot set.")
    screenshots: list[Screenshot] = Field(
        min_length=1, max_length=10_000, description="The screenshots of the set."
    )
    name: str | None = Field(None, max_length=500, description="Human-readable name of the set.")
    download_url: HttpURL | None = Field(
        None, description="An archive with every uploaded screenshot of the set, if one is offered."
    )
    approved_at: UTCDatetime | None = Field(
        None, description="When the set was approved (UTC, ISO-8601)."
    )


class ScreenshotSetApprovedData(_Strict):
    """The ``data`` of ``screenshot_set.approved``."""

    screenshot_set: ScreenshotSet


class Event(_Strict):
    """The envelope every event shares. Subclasses narrow ``type`` and ``data``."""

    id: Id = Field(description="Unique id of the event; receivers use it to deduplicate.")
    type: str = Field(description="The event type.")
    created_at: UTCDatetime = Field(description="When the event happened (UTC, ISO-8601).")
    data: BaseModel


EVENT_TYPES: dict[str, type[Event]] = {}
E = TypeVar("E", bound=type[Event])


def event_type(name: str) -> Callable[[E], E]:
    """Register an event model under its type name."""

    def register(model: E) -> E:
        if name in EVENT_TYPES:
            raise ValueError(f"event type {name!r} is registered twice")
        EVENT_TYPES[name] = model
        return model

    return register


@event_type("screenshot_set.approved")
class ScreenshotSetApproved(Event):
    """Fired when a set of screenshots is ready for download."""

    type: Literal["screenshot_set.approved"] = Field(description="The event type.")
    data: ScreenshotSetApprovedData


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "event"


def parse_event(raw: Any) -> Event:
    """Validate ``raw`` (a mapping) against its registered model, or raise InvalidEvent."""
    if not isinstance(raw, Mapping):
        raise InvalidEvent([("event", f"must be a JSON object, not {type(raw).__name__}")])
    name = raw.get("type")
    model = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if model is None:
        known = ", ".join(sorted(EVENT_TYPES))
        raise InvalidEvent([("type", f"unknown event type {name!r}; known types: {known}")])
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise InvalidEvent(
            [(_field(err["loc"]), err["msg"]) for err in exc.errors(include_url=False)]
        ) from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise InvalidEvent([(key, "appears twice in one object; which value was meant is "
                                      "not knowable, so neither is taken")])
        found[key] = value
    return found


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"the number {text[:20]} is too large")
    return number


def _depth(value: Any) -> int:
    """How deep arrays and objects nest in ``value`` (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (
                item.values() if isinstance(item, dict) else item))
    return deepest


def loads_event(text: bytes | str) -> Any:
    """JSON text of an event as a producer sent it, parsed, or :class:`InvalidEvent`
    saying in one line what is wrong with it: not JSON, not UTF-8 (or UTF-16/32 with
    the marks that tell them), a key twice in one object, a number too long, or
    nesting deeper than :data:`MAX_DEPTH`."""
    try:
        raw = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_not_a_number,
                         parse_float=_finite)
    except InvalidEvent:
        raise
    except json.JSONDecodeError as exc:
        raise InvalidEvent([("event", f"not valid JSON: {exc.msg} at line {exc.lineno} "
                                      f"column {exc.colno}")]) from None
    except UnicodeDecodeError as exc:
        raise InvalidEvent([("event", f"not UTF-8 text: {exc.reason} at byte {exc.start}")]
                           ) from None
    except RecursionError:
        raise InvalidEvent([("event", f"nested too deep; the limit is {MAX_DEPTH} levels")]
                           ) from None
    except ValueError as exc:  # a number over Python's 4,300 digits, NaN, Infinity
        raise InvalidEvent([("event", f"not valid JSON: {str(exc).split(';')[0]}")]) from None
    if _depth(raw) > MAX_DEPTH:
        raise InvalidEvent([("event", f"nested too deep; the limit is {MAX_DEPTH} levels")])
    return raw


def encode(event: Event) -> bytes:
    """The exact bytes POSTed: compact JSON, keys in model order, UTF-8."""
    return event.model_dump_json().encode()


def event_schema() -> dict[str, Any]:
    """JSON Schema of every registered event, as one union discriminated by ``type``."""
    models = [EVENT_TYPES[name] for name in sorted(EVENT_TYPES)]
    union: Any = reduce(operator.or_, models)
    if len(models) > 1:
        union = Annotated[union, Field(discriminator="type")]
    schema: dict[str, Any] = TypeAdapter(union).json_schema(mode="serialization")
    draft = "https://json-schema.org/draft/2020-12/schema"
    return {"$schema": draft, **schema, "title": "Webhook event"}
