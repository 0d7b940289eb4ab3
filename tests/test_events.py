"""Event models: the reference's statuses, strict keys, UTC times, the registry and schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import pytest

from tests.conftest import event
from webhooks.catalog import AdStatus, ScreenshotStatus
from webhooks.errors import InvalidEvent
from webhooks.events import (
    EVENT_TYPES,
    encode,
    event_schema,
    event_type,
    parse_event,
)

ROOT = Path(__file__).resolve().parent.parent


def test_statuses_are_exactly_the_references():
    assert [s.value for s in AdStatus] == [
        "uploaded",
        "not_found",
        "net_read_timeout",
        "generic_error",
    ]
    assert [s.value for s in ScreenshotStatus] == [
        "uploaded",
        "ad_not_captured",
        "net_read_timeout",
        "no_slots_found",
        "site_unreachable",
        "ssl_error",
        "generic_error",
    ]


def test_reference_mentions_every_status():
    reference = ROOT.parent / "shared" / "reference" / "webhooks-reference.txt"
    if not reference.exists():
        pytest.skip("the shared reference is not beside this checkout")
    words = set(reference.read_text().split())
    assert {s.value for s in [*AdStatus, *ScreenshotStatus]} <= words


def test_valid_event_round_trips_and_times_become_utc():
    parsed = parse_event(event(created_at="2026-11-26T12:00:00+02:00"))
    body = json.loads(encode(parsed))
    assert body["created_at"] == "2026-11-26T10:00:00Z"
    assert body["type"] == "screenshot_set.approved"
    assert body["data"]["screenshot_set"]["screenshots"][0]["download_url"] == (
        "https://cdn.example.com/shot_1.png"
    )
    # The same event always encodes to the same bytes: signatures will rely on it.
    assert encode(parse_event(body)) == encode(parsed)


def test_urls_are_kept_exactly_as_written():
    raw = event()
    raw["data"]["screenshot_set"]["screenshots"][0]["site_url"] = "https://Example.com"
    body = json.loads(encode(parse_event(raw)))
    assert body["data"]["screenshot_set"]["screenshots"][0]["site_url"] == "https://Example.com"


def test_every_problem_is_reported_not_only_the_first():
    raw = event(created_at="nope", typo=1)
    with pytest.raises(Exception) as caught:
        parse_event(raw)
    fields = [field for field, _ in cast(InvalidEvent, caught.value).problems]
    assert fields == ["created_at", "typo"]
    assert "1 more problem" in str(caught.value)


def test_a_new_event_type_is_a_model_and_a_name(other_event_type):
    parsed = parse_event(
        {
            "id": "e",
            "type": other_event_type,
            "created_at": "2026-01-01T00:00:00Z",
            "data": {"order_id": "o"},
        }
    )
    model = EVENT_TYPES[other_event_type]
    assert type(parsed) is model and model.__name__ == "OrderShipped"
    schema = event_schema()
    assert "OrderShipped" in schema["$defs"] and "ScreenshotSetApproved" in schema["$defs"]
    assert len(schema["oneOf"]) == 2  # a union discriminated by "type"
    with pytest.raises(ValueError, match="registered twice"):
        event_type(other_event_type)(model)


def test_committed_schema_matches_the_models():
    committed = json.loads((ROOT / "docs" / "event-schema.json").read_text())
    assert committed == event_schema(), "run: webhooks schema > docs/event-schema.json"


def test_schema_documents_every_field():
    defs = event_schema()["$defs"]
    for name in ("Ad", "Screenshot", "ScreenshotSet"):
        for field, spec in defs[name]["properties"].items():
            assert spec.get("description"), f"{name}.{field} has no description"


def test_a_key_twice_in_one_object_is_refused_naming_it():
    from webhooks.events import loads_event

    with pytest.raises(InvalidEvent) as caught:
        loads_event(b'{"id": "a", "id": "b"}')
    assert caught.value.field == "id" and "appears twice" in str(caught.value)
    with pytest.raises(InvalidEvent) as caught:
        loads_event(
            json.dumps(event()).replace(
                '"status": "uploaded"', '"status": "uploaded", "status": "x"', 1
            )
        )
    assert caught.value.field == "status"
    raw = event()
    assert loads_event(json.dumps(raw).encode()) == raw
