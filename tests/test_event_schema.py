"""The committed event schema states the validator's rules: every event the schema
allows, parse_event accepts; an event parse_event refuses for a rule JSON Schema can
state, the schema refuses too, at the same place."""

from __future__ import annotations

import json
import re
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis_jsonschema._from_schema as hjs
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import utils as conjecture_utils
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # ships no types
from pydantic import TypeAdapter

from tests.conftest import event
from webhooks.errors import InvalidEvent
from webhooks.events import HttpURL, Id, encode, parse_event

ROOT = Path(__file__).resolve().parent.parent
SCHEMA: dict[str, Any] = json.loads((ROOT / "docs" / "event-schema.json").read_text())
DEFS = SCHEMA["$defs"]
# jsonschema checks the formats it has a checker for; "date-time" needs the optional
# rfc3339-validator package, so the date-time cases below rest on the pattern.
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_of(event_type: str) -> dict[str, Any]:
    """The committed schema of one event type, with the definitions it refers to."""
    if "oneOf" not in SCHEMA:  # one registered type: the schema is that type's
        assert SCHEMA["properties"]["type"]["const"] == event_type
        return SCHEMA
    for branch in SCHEMA["oneOf"]:
        model = DEFS[branch["$ref"].rsplit("/", 1)[1]]
        if model["properties"]["type"]["const"] == event_type:
            return {"$defs": DEFS, **model}
    raise LookupError(event_type)


def _pattern(definition: dict[str, Any]) -> re.Pattern[str]:
    """The pattern of a string schema, or of the string branch of an anyOf."""
    for branch in definition.get("anyOf", [definition]):
        if "pattern" in branch:
            assert branch["pattern"].startswith("^") and branch["pattern"].endswith("$")
            return re.compile(branch["pattern"])
    raise LookupError(definition)


def _matches(pattern: re.Pattern[str], text: str) -> bool:
    """Whether an ECMA-262 engine finds ``pattern`` (anchored: ^...$) in ``text``. The
    patterns are written in the syntax both read alike; only Python's $ differs, which
    also matches before a final newline: fullmatch leaves that out."""
    return pattern.fullmatch(text) is not None


URL_PATTERN = _pattern(DEFS["Screenshot"]["properties"]["download_url"])
ID_PATTERN = _pattern(DEFS["Screenshot"]["properties"]["id"])
DATE_TIME_PATTERN = _pattern(SCHEMA["properties"]["created_at"])


# -- hypothesis-jsonschema, made to work with the Hypothesis installed ---------------
#
# hypothesis-jsonschema 0.23.1 (the latest release, and its main branch) draws objects
# with a Hypothesis internal, ``while many(...).more()``; the Hypothesis installed here
# (6.170) has ``with many(...) as elements: for _ in elements`` instead, so every
# object schema fails with "AttributeError: 'many' object has no attribute 'more'".
# _Many gives it the old interface on the new class. And it builds the strategy of
# each nested schema again at every draw (about a second per event here); _built
# keeps them, which takes an example under 0.1 s. Both only for this module's tests,
# and each only where it is needed.

_DONE = object()


class _Many:
    def __init__(self, data: Any, **sizes: Any) -> None:
        self._many = conjecture_utils.many(data, **sizes)
        self._many.__enter__()
        self._elements = iter(self._many)

    def more(self) -> bool:
        if next(self._elements, _DONE) is _DONE:
            self._many.__exit__(None, None, None)
            return False
        return True

    def reject(self) -> None:
        self._many.reject()


@pytest.fixture(scope="module", autouse=True)
def _hypothesis_jsonschema_fixed() -> Iterator[None]:
    build = getattr(hjs, "__from_schema", None)
    # By identity: it asks again with the same (never changed) dict objects. The dicts
    # are kept with their strategies so that no identity is reused.
    built: dict[tuple[int, int, int], tuple[Any, st.SearchStrategy[Any]]] = {}

    def _built(schema: Any, *, alphabet: Any, custom_formats: Any) -> st.SearchStrategy[Any]:
        assert build is not None  # installed only when hypothesis-jsonschema has it
        key = (id(schema), id(alphabet), id(custom_formats))
        if key not in built:
            built[key] = (schema, build(schema, alphabet=alphabet, custom_formats=custom_formats))
        return built[key][1]

    with pytest.MonkeyPatch.context() as patch:
        if hasattr(hjs, "cu") and not hasattr(conjecture_utils.many, "more"):
            patch.setattr(hjs, "cu", types.SimpleNamespace(many=_Many))
        if build is not None:
            patch.setattr(hjs, "__from_schema", _built)
        yield


# -- what the schema allows, the validator accepts ----------------------------------


# Not shrunk: shrinking one of these events takes minutes, past the suite's timeout, and
# the failure names the field anyway. hypothesis-jsonschema discards many drafts of an
# event with patterns and formats (seen: 50 of 59 in one run, which failed Hypothesis's
# filter health check); the 30 examples are still 30.
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(from_schema(schema_of("screenshot_set.approved")))
def test_every_event_the_schema_allows_is_accepted(raw: dict[str, Any]) -> None:
    assert VALIDATOR.is_valid(raw)  # hypothesis-jsonschema and jsonschema agree
    parsed = parse_event(raw)
    # What we send is in the schema's form too (times become UTC with a "Z").
    VALIDATOR.validate(json.loads(encode(parsed)))


def _accepted_time(text: str) -> bool:
    try:
        parse_event(event(created_at=text))
    except InvalidEvent:
        return False
    return True


@settings(max_examples=150, deadline=None)
@given(st.from_regex(DATE_TIME_PATTERN, fullmatch=True))
@example("0001-01-01T00:00:00-01:00")  # the earliest instant, from a negative offset
@example("0001-01-01T00:00:00+00:00")
@example("9999-12-31T23:59:59.999999999+01:00")  # the latest, from a positive one
@example("2000-02-29t23:59:59z")  # a leap year, lower case
@example("2026-01-01T00:00:00.000000000000001-23:59")
def test_every_date_time_the_pattern_allows_is_accepted(text: str) -> None:
    assert _accepted_time(text), text


# -- what the validator refuses, the schema refuses ---------------------------------

_MISSING = object()
SHOT = ("data", "screenshot_set", "screenshots", 0)
UPLOADED = (*SHOT, "download_url")  # of a screenshot whose status is "uploaded"


def _set(path: tuple[str | int, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(raw: dict[str, Any]) -> None:
        parent: Any = raw  # a dict or, at an int part, a list
        for part in path[:-1]:
            parent = parent[part]
        if value is _MISSING:
            del parent[path[-1]]
        else:
            parent[path[-1]] = value

    return change


REFUSED: dict[str, tuple[tuple[str | int, ...], Any]] = {
    # (where, the value put there; _MISSING removes the key)
    "url with another scheme": (UPLOADED, "ftp://cdn.example.com/shot_1.png"),
    "url with no host": ((*SHOT, "site_url"), "https://"),
    "url with a user": ((*SHOT, "site_url"), "https://user@news.example.com/"),
    "relative url": (UPLOADED, "/shot_1.png"),
    "url with a space": (UPLOADED, "https://cdn.example.com/shot 1.png"),
    "url with a tab in the host": ((*SHOT, "ad", "creative_url"), "https://cdn\t.example.com"),
    "url longer than 2048": (UPLOADED, "https://cdn.example.com/" + "a" * 2025),
    "uploaded without download_url": (UPLOADED, _MISSING),
    "uploaded with a null download_url": (UPLOADED, None),
    "time without an offset": (("created_at",), "2026-11-26T10:00:00"),
    "time with a leap second": (("created_at",), "2026-12-31T23:59:60Z"),
    "time on 30 February": ((*SHOT, "captured_at"), "2026-02-30T10:00:00Z"),
    "time on 29 February 2100": ((*SHOT, "captured_at"), "2100-02-29T10:00:00Z"),
    "time in the year 0": (("data", "screenshot_set", "approved_at"), "0000-06-01T00:00:00Z"),
    "time at hour 24": (("created_at",), "2026-11-26T24:00:00Z"),
    "time that is not one": (("created_at",), "yesterday"),
    "id with a space": (("id",), "evt 1"),
    "id with a next-line": (("id",), "evt\x851"),
    "empty id": ((*SHOT, "ad", "id"), ""),
    "unknown key": (("typo",), 1),
    "unknown status": ((*SHOT, "status"), "lost"),
    "no screenshots": (("data", "screenshot_set", "screenshots"), []),
    "name longer than 500": (("data", "screenshot_set", "name"), "n" * 501),
}


def _refused_at(raw: dict[str, Any]) -> Iterator[tuple[str | int, ...]]:
    """Where the schema refuses ``raw``: an unknown key at the key, not at its object."""
    for error in VALIDATOR.iter_errors(raw):
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties":
            known = error.schema.get("properties", {})
            yield from ((*path, key) for key in error.instance if key not in known)
        else:
            yield path


@pytest.mark.parametrize(("where", "value"), REFUSED.values(), ids=REFUSED.keys())
def test_what_the_validator_refuses_the_schema_refuses(
    where: tuple[str | int, ...], value: Any
) -> None:
    raw = event()
    _set(where, value)(raw)
    with pytest.raises(InvalidEvent) as refused:
        parse_event(raw)
    # Both refuse it there (the screenshot's rule: at the screenshot).
    place = SHOT if where == UPLOADED and value in (_MISSING, None) else where
    assert refused.value.field.startswith(".".join(map(str, place)))
    places = list(_refused_at(raw))
    assert places, "the schema allows what the validator refuses"
    assert any(found[: len(place)] == place for found in places), places


ACCEPTED: dict[str, tuple[tuple[str | int, ...], Any]] = {
    "url with a scheme in capitals": (UPLOADED, "HtTpS://CDN.example.com/shot_1.png"),
    # Only ASCII whitespace is refused in a URL (re.ASCII), not a no-break space.
    "url with a no-break space": (UPLOADED, "https://cdn.example.com/shot\u00a01.png"),
    "url with a line separator": (UPLOADED, "https://cdn.example.com/\u2028"),
    "url with an @ after the host": (UPLOADED, "http://cdn.example.com/@me"),
    "time in lower case": (("created_at",), "2026-11-26t10:00:00.5z"),
    "time with a far offset": (("created_at",), "2026-11-26T10:00:00-23:59"),
    "time on 29 February 2000": (("created_at",), "2000-02-29T10:00:00+01:00"),
    "id with a zero-width no-break space": (("id",), "evt\ufeff1"),
    "screenshot not uploaded, no download_url": (
        ("data", "screenshot_set", "screenshots", 1, "download_url"),
        None,
    ),
}


@pytest.mark.parametrize(("where", "value"), ACCEPTED.values(), ids=ACCEPTED.keys())
def test_what_the_validator_accepts_the_schema_allows(
    where: tuple[str | int, ...], value: Any
) -> None:
    raw = event()
    _set(where, value)(raw)
    parse_event(raw)
    VALIDATOR.validate(raw)


def test_an_instant_python_cannot_hold_is_refused_by_the_schema() -> None:
    raw = event(created_at="0001-01-01T00:30:00+01:00")  # 0000-12-31T23:30Z
    assert "created_at" in {found[0] for found in _refused_at(raw)}
    # Not accepted by the validator either, but not refused properly: see below.
    with pytest.raises((InvalidEvent, OverflowError)):
        parse_event(raw)


@pytest.mark.parametrize("moment", ["9999-12-31T23:30:00-01:00", "0001-01-01T00:30:00+01:00"])
def test_an_instant_python_cannot_hold_is_an_invalid_event(moment: str) -> None:
    with pytest.raises(InvalidEvent) as refused:
        parse_event(event(created_at=moment))
    assert refused.value.field == "created_at"


# -- the patterns, character by character --------------------------------------------

# Every character that one of the engines concerned counts as whitespace (Python's
# str.isspace, Rust's White_Space, ECMA-262's \s) or folds to an ASCII letter
# (U+017F, U+212A) is in the Basic Multilingual Plane; the other planes are sampled.
CHARACTERS = [
    chr(code)
    for code in [*range(0xD800), *range(0xE000, 0x10000), 0x10000, 0x1F600, 0xE0020, 0x10FFFF]
]


def _validates(adapter: TypeAdapter[str], text: str) -> bool:
    try:
        adapter.validate_python(text)
    except ValueError:
        return False
    return True


def test_the_url_pattern_accepts_what_the_validator_accepts() -> None:
    adapter = TypeAdapter(HttpURL)
    templates = [
        "{}ttp://a",
        "http{}://a",
        "https://{}",
        "https://a{}b",
        "https://a/{}",
        "https://a?b{}",
        "https://a#{}",
    ]
    differ = [
        text
        for text in (template.format(char) for template in templates for char in CHARACTERS)
        if _validates(adapter, text) != _matches(URL_PATTERN, text)
    ]
    assert differ == []


def test_the_id_pattern_accepts_what_the_validator_accepts() -> None:
    adapter = TypeAdapter(Id)
    differ = [
        char
        for char in CHARACTERS
        if _validates(adapter, f"a{char}b") != _matches(ID_PATTERN, f"a{char}b")
    ]
    assert differ == []


def test_times_are_date_times_and_urls_have_the_pattern() -> None:
    times = [
        SCHEMA["properties"]["created_at"],
        *DEFS["Screenshot"]["properties"]["captured_at"]["anyOf"][:1],
        *DEFS["ScreenshotSet"]["properties"]["approved_at"]["anyOf"][:1],
    ]
    assert [time.get("format") for time in times] == ["date-time"] * 3
    urls = [
        DEFS["Ad"]["properties"]["creative_url"],
        DEFS["ScreenshotSet"]["properties"]["download_url"],
        *(DEFS["Screenshot"]["properties"][name] for name in ("site_url", "download_url")),
    ]
    assert {_pattern(url).pattern for url in urls} == {URL_PATTERN.pattern}
