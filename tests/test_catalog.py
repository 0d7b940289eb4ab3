"""The event catalog: each registered type's description, schema and example through
``GET /api/v1/event-types`` and ``webhooks event-types``, and an endpoint filter that
names a type nobody registered, refused with the closest registered name."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # ships no types

from tests.test_cli import assert_one_line_error, invoke
from tests.web import InProcess
from webhooks import portal_token
from webhooks.events import EVENT_TYPES, encode, parse_event, unknown_type

APPROVED = "screenshot_set.approved"


def _entry(answer: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [entry for entry in answer["data"] if entry["type"] == name]
    return found


def test_catalog_lists_each_type_with_an_example_that_validates(
    api: InProcess, tenant: str
) -> None:
    answer = api.call("GET", "/api/v1/event-types")
    assert answer.status_code == 200
    body = answer.json()
    assert [entry["type"] for entry in body["data"]] == sorted(EVENT_TYPES)
    approved = _entry(body, APPROVED)
    assert set(approved) == {"type", "description", "schema", "example"}
    assert approved["description"] == "Fired when a set of screenshots is ready for download."
    assert approved["schema"]["properties"]["type"]["const"] == APPROVED
    # Valid by the schema a receiver would use, and by the model we check events with;
    # and it is exactly what is sent: the encoded event reads back the same.
    Draft202012Validator(approved["schema"]).validate(approved["example"])
    assert json.loads(encode(parse_event(approved["example"]))) == approved["example"]
    # A tenant's portal reads the same catalog; no token reads nothing.
    assert api.call("GET", "/api/v1/event-types", portal_token(tenant)).json() == body
    refused = api.call("GET", "/api/v1/event-types", None)
    assert refused.status_code == 401
    assert "data" not in refused.json()


def test_a_type_without_an_example_is_listed_with_none(
    api: InProcess, other_event_type: str
) -> None:
    entry = _entry(api.call("GET", "/api/v1/event-types").json(), other_event_type)
    assert entry["example"] is None
    assert entry["schema"]["properties"]["type"]["const"] == other_event_type


def test_an_unregistered_filter_is_refused_naming_the_closest_type(
    api: InProcess, tenant: str
) -> None:
    path = f"/api/v1/tenants/{tenant}/endpoints"
    body = {"url": "https://example.com/hook", "event_types": ["screenshot_set.aproved"]}
    refused = api.call("POST", path, json=body)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["field"] == "event_types"
    assert "'screenshot_set.aproved'" in error["message"]
    assert "did you mean 'screenshot_set.approved'?" in error["message"]
    assert api.call("GET", path).json()["data"] == []  # nothing was added
    # A change of filter is checked the same way.
    made = api.call("POST", path, json={"url": "https://example.com/hook"}).json()
    changed = api.call("PATCH", f"{path}/{made['id']}", json={"event_types": ["approved"]})
    assert changed.status_code == 422
    assert changed.json()["error"]["field"] == "event_types"


def test_unknown_type_is_bounded_and_hints_only_when_close() -> None:
    hostile = "x" * 10_000
    said = unknown_type(hostile)
    assert len(said) < 300 and said.count("x") <= 101 and "…" in said
    assert "did you mean" not in said
    assert "did you mean" not in unknown_type({"a": [1] * 1000})
    assert len(unknown_type({"a": [1] * 1000})) < 300


def test_cli_lists_the_catalog_and_refuses_a_misspelt_filter(tenant: str) -> None:
    listed = invoke("event-types", "--json")
    assert listed.returncode == 0, listed.stderr
    approved = _entry({"data": json.loads(listed.stdout)}, APPROVED)
    Draft202012Validator(approved["schema"]).validate(approved["example"])
    table = invoke("event-types")
    assert table.returncode == 0 and APPROVED in table.stdout
    refused = invoke(
        "endpoints", "add", "https://example.com/hook", "--tenant", tenant,
        "--event", "screenshot_set.aproved",
    )  # fmt: skip
    assert_one_line_error(refused, "event_types", "did you mean 'screenshot_set.approved'?")
