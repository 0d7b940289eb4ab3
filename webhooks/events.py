"""Events: the envelope every event shares, the registry of event types, and how an
event is read, checked and written.

A new event type is a model plus a name: subclass :class:`Event`, give it a
``type`` literal and a ``data`` model (built from :class:`Model`, with the field
types :data:`Id`, :data:`HttpURL` and :data:`Time` where they fit), and decorate it
with :func:`event_type`. Nothing else in the package branches on the type. The
modules that register a deployment's types are named by ``WEBHOOKS_EVENT_MODULES``
(:func:`load_event_modules`); ``webhooks.catalog`` holds this product's own.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import reduce
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from pydantic.json_schema import DEFAULT_REF_TEMPLATE

from .clock import UTCDatetime
from .errors import InvalidEvent, InvalidInput

__all__ = [
    "EVENT_TYPES",
    "Event",
    "HttpURL",
    "Id",
    "Model",
    "Time",
    "catalog",
    "encode",
    "event_example",
    "event_schema",
    "event_type",
    "load_event_modules",
    "loads_event",
    "parse_event",
    "unknown_type",
]

#: How deep objects and arrays may nest in an event's JSON (the events here nest 7 deep).
MAX_DEPTH = 32


_ABSOLUTE_HTTP = re.compile(r"(?i:https?)://[^/?#@\s]+(?:[/?#]\S*)?", re.ASCII)

# The JSON Schema (docs/event-schema.json) states these checks too, with patterns for
# the schema only: the checks at run time stay as they are. JSON Schema patterns are
# ECMA-262 regular expressions, searched unanchored, so these are anchored with ^...$
# and written in the syntax Python's re and ECMA-262 read alike: no inline flags, and
# whitespace spelt out as a class, because \s means another set in each of Python's
# ASCII mode, Rust's regex (pydantic's engine) and ECMA-262. One difference remains,
# in Python-based schema validators only (jsonschema uses re.search): there $ also
# matches before a final "\n", so "https://a\n" passes the pattern there, while
# ECMA-262 engines and the checks here refuse it.

#: _ABSOLUTE_HTTP (with fullmatch), in ECMA-262: the same strings.
#: (?i:https?) under re.ASCII folds ASCII letters only, hence [Hh][Tt][Tt][Pp][Ss]?;
#: \s under re.ASCII is [\t\n\v\f\r ] only, so a no-break space or U+2028 is
#: accepted in a URL, which ECMA-262's \S would refuse.
_HTTP_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\t\n\v\f\r ]+(?:[/?#][^\t\n\v\f\r ]*)?$"

#: What pydantic's ``pattern=r"^\S+$"`` accepts at run time, in ECMA-262 terms:
#: pydantic matches with Rust's regex, whose \s is Unicode White_Space. ECMA-262's \s
#: is another set (it lacks U+0085 and has U+FEFF), so the set is spelt out.
_ID_PATTERN = r"^[^\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$"

#: A date-time the validator accepts, as RFC 3339 (JSON Schema's ``date-time``)
#: spells it; the pattern states it whole, calendar included, for validators that take
#: ``format`` as an annotation only. The validator also takes other spellings (a space
#: for the "T", no seconds, "+0200", a Unix timestamp): the schema states the one form
#: we promise and write. Refused although RFC 3339 allows them: a leap second (":60"),
#: the year 0000, and an instant before 0001-01-01 or after 9999-12-31 in UTC, which
#: Python cannot represent (0001-01-01 with a positive offset, 9999-12-31 with a
#: negative one; the pattern refuses those dates with any such offset, also the few
#: instants that would fit).
_DATE_TIME_PATTERN = (
    r"^(?!0000-|0001-01-01[Tt][^+]*\+(?!00:00)|9999-12-31[Tt][^-]*-(?!00:00))"
    r"(?:[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    r"|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)-02-29)"
    r"[Tt](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)


def _http_url(value: str) -> str:
    # Kept as the producer wrote it: pydantic's HttpUrl would rewrite it (a trailing
    # slash, punycode), and receivers compare these strings. A regular expression,
    # not urlsplit: events carry many URLs and bulk publishing validates them all.
    if not _ABSOLUTE_HTTP.fullmatch(value):
        raise ValueError("must be an absolute http(s) URL")
    return value


# json_schema_extra and WithJsonSchema change the schema only: what is checked at
# run time is the Field constraints and the validators, as before.
Id = Annotated[
    str,
    Field(
        min_length=1, max_length=255, pattern=r"^\S+$", json_schema_extra={"pattern": _ID_PATTERN}
    ),
]
HttpURL = Annotated[
    str,
    Field(max_length=2048, json_schema_extra={"pattern": _HTTP_URL_PATTERN}),
    AfterValidator(_http_url),
]


def _text(value: object) -> object:
    # The schema says a string: pydantic would also take a number (Unix seconds).
    if not isinstance(value, str | datetime):
        raise ValueError("must be an ISO-8601 date-time string")
    return value


Time = Annotated[
    UTCDatetime,
    BeforeValidator(_text),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": _DATE_TIME_PATTERN}),
]


class Model(BaseModel):
    """A frozen model that refuses unknown keys."""

    # Unknown keys are refused so that a typo in a producer shows up at once
    # instead of silently dropping a field the receiver was promised.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Event(Model):
    """The envelope every event shares. Subclasses narrow ``type`` and ``data``."""

    id: Id = Field(description="Unique id of the event; receivers use it to deduplicate.")
    type: str = Field(description="The event type.")
    created_at: Time = Field(description="When the event happened (UTC, ISO-8601).")
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


def load_event_modules(modules: Sequence[str]) -> None:
    """Import the modules that register event types (``WEBHOOKS_EVENT_MODULES``); each
    registers its types once, however often this runs. A module that cannot be
    imported raises :class:`~webhooks.InvalidInput` naming it."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise InvalidInput("WEBHOOKS_EVENT_MODULES", f"cannot import {name!r}: {exc}") from None


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "event"


def parse_event(raw: Any) -> Event:
    """Validate ``raw`` (a mapping) against its registered model, or raise InvalidEvent."""
    if not isinstance(raw, Mapping):
        raise InvalidEvent([("event", f"must be a JSON object, not {type(raw).__name__}")])
    name = raw.get("type")
    model = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if model is None:
        raise InvalidEvent([("type", unknown_type(name))])
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
            raise InvalidEvent(
                [
                    (
                        key,
                        "appears twice in one object; which value was meant is "
                        "not knowable, so neither is taken",
                    )
                ]
            )
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
            stack.extend(
                (child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)
            )
    return deepest


def loads_event(text: bytes | str) -> Any:
    """JSON text of an event as a producer sent it, parsed, or :class:`InvalidEvent`
    saying in one line what is wrong with it: not JSON, not UTF-8 (or UTF-16/32 with
    the marks that tell them), a key twice in one object, a number too long, or
    nesting deeper than :data:`MAX_DEPTH`."""
    try:
        raw = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_constant=_not_a_number,
            parse_float=_finite,
        )
    except InvalidEvent:
        raise
    except json.JSONDecodeError as exc:
        raise InvalidEvent(
            [("event", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")]
        ) from None
    except UnicodeDecodeError as exc:
        raise InvalidEvent(
            [("event", f"not UTF-8 text: {exc.reason} at byte {exc.start}")]
        ) from None
    except RecursionError:
        raise InvalidEvent(
            [("event", f"nested too deep; the limit is {MAX_DEPTH} levels")]
        ) from None
    except ValueError as exc:  # a number over Python's 4,300 digits, NaN, Infinity
        raise InvalidEvent([("event", f"not valid JSON: {str(exc).split(';')[0]}")]) from None
    if _depth(raw) > MAX_DEPTH:
        raise InvalidEvent([("event", f"nested too deep; the limit is {MAX_DEPTH} levels")])
    return raw


def encode(event: Event) -> bytes:
    """The exact bytes POSTed: compact JSON, keys in model order, UTF-8."""
    return event.model_dump_json().encode()


def event_schema(*, ref_template: str = DEFAULT_REF_TEMPLATE) -> dict[str, Any]:
    """JSON Schema of every registered event, as one union discriminated by ``type``.

    ``ref_template`` places the definitions elsewhere than ``#/$defs/``: the OpenAPI
    document puts them among its components."""
    models = [EVENT_TYPES[name] for name in sorted(EVENT_TYPES)]
    union: Any = reduce(operator.or_, models)
    if len(models) > 1:
        union = Annotated[union, Field(discriminator="type")]
    schema: dict[str, Any] = TypeAdapter(union).json_schema(
        mode="serialization", ref_template=ref_template
    )
    draft = "https://json-schema.org/draft/2020-12/schema"
    return {"$schema": draft, **schema, "title": "Webhook event"}


# --- The catalog ------------------------------------------------------------------

#: How much of a name that is not a registered type an error message repeats: the
#: name is a stranger's (an endpoint filter, a test's event_type).
_SHOWN_NAME = 100


def unknown_type(name: object) -> str:
    """Why ``name`` is refused as an event type, in one line: the name (cut short),
    the registered name closest to it, and every registered name."""
    known = sorted(EVENT_TYPES)
    text = name if isinstance(name, str) else ""
    shown = repr(name[:_SHOWN_NAME] if isinstance(name, str) else name)
    if len(text) > _SHOWN_NAME or len(shown) > _SHOWN_NAME + 2:  # not all of it
        shown = shown[: _SHOWN_NAME + 2] + "…"
    closest = difflib.get_close_matches(text[:_SHOWN_NAME], known, n=1, cutoff=0.6)
    hint = f" (did you mean {closest[0]!r}?)" if closest else ""
    return f"unknown event type {shown}{hint}; known types: {', '.join(known)}"


def event_example(name: str) -> dict[str, Any] | None:
    """The first example payload of a registered type, from its model's
    ``json_schema_extra={"examples": [...]}``; None if the model gives none."""
    extra = EVENT_TYPES[name].model_config.get("json_schema_extra")
    examples = extra.get("examples") if isinstance(extra, dict) else None
    if not isinstance(examples, list) or not examples:
        return None
    example: dict[str, Any] = json.loads(json.dumps(examples[0]))  # a copy the caller may change
    return example


def catalog() -> list[dict[str, Any]]:
    """Every registered event type, by name: its description (the model's docstring),
    its JSON Schema, and its example payload (None if the model gives none)."""
    return [
        {
            "type": name,
            "description": inspect.cleandoc(model.__doc__ or ""),
            "schema": model.model_json_schema(mode="serialization"),
            "example": event_example(name),
        }
        for name, model in sorted(EVENT_TYPES.items())
    ]
