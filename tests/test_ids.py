"""Ids are checked against their format before any Redis key is built from them: every
route, fed ids that cannot be of their kind, answers exactly as it does for a missing
one (404, or 422 for an id that is input to store), and never 500; the stores check
at their own door too, so the CLI and the Python API are covered."""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from fastapi.routing import APIRoute

from tests.conftest import event, stored
from tests.web import InProcess
from webhooks.clock import now
from webhooks.errors import DeliveryNotFound, EndpointNotFound, NotFound, TenantNotFound
from webhooks.ids import (
    DELIVERY_ID,
    ENDPOINT_ID,
    TENANT_ID,
    checked_delivery_id,
    checked_endpoint_id,
    checked_tenant_id,
    new_endpoint_id,
)
from webhooks.models import check_tenant_id
from webhooks.producer import Producer, delivery_id
from webhooks.settings import Settings
from webhooks.system import System, get_endpoints, get_tenants
from webhooks.web.app import create_app
from webhooks.web.errors import every_route

#: What an attacker puts where an id goes: key syntax, glob and hash-tag characters,
#: spaces, a trailing newline, and 10 KB.
HOSTILE = [":", "*", "{", "}", " ", "a b", "x*", "{acct}", "ep_1\n", "é", "x" * 10_240]

#: Whose missing-id answer a malformed id of each kind gets.
NOT_FOUND = {
    "tenant_id": TenantNotFound,
    "endpoint_id": EndpointNotFound,
    "delivery_id": DeliveryNotFound,
}


@pytest.fixture
def two_tenants(api: InProcess) -> Iterator[dict[str, dict[str, str]]]:
    """Two tenants, each with an endpoint and a delivery to it."""
    made: dict[str, dict[str, str]] = {}
    for name in ("mine", "theirs"):
        tenant_id = f"acct_ids_{uuid.uuid4().hex[:8]}"
        get_tenants().add(tenant_id)
        endpoint, _ = get_endpoints().add("http://127.0.0.1:9/", tenant=tenant_id)
        (delivery,) = stored(event(), [(endpoint.url, endpoint.id)], tenant=tenant_id)
        made[name] = {
            "tenant_id": tenant_id,
            "endpoint_id": endpoint.id,
            "delivery_id": delivery.id,
        }
    yield made
    for ids in made.values():
        get_tenants().delete(ids["tenant_id"])


def _body(path: str, method: str) -> Any:
    """A body the route accepts, so that what refuses the request is the id; a route
    not known here gets {} (a 422 is still no 500)."""
    if method == "POST" and path.endswith("/endpoints"):
        return {"url": "http://127.0.0.1:9/"}
    if path.endswith("/events"):
        return event()
    if path.endswith("/recover"):
        return {"since": (now() - timedelta(hours=1)).isoformat()}
    return {}


def _id_routes() -> list[tuple[str, str, list[str]]]:
    """Every (method, path, id parameters) of the application: a new route is fed
    hostile ids without anyone adding it here."""
    found = []
    for route in every_route(create_app(System())):
        if isinstance(route, APIRoute):
            names = [name for name in route.param_convertors if name in NOT_FOUND]
            found += [
                (method, route.path, names) for method in sorted(route.methods or ()) if names
            ]
    return found


def _missing(kind: str, value: str) -> dict[str, Any]:
    """The answer for an id that does not exist."""
    return {"error": {"code": "not_found", "message": str(NOT_FOUND[kind](value))}}


@pytest.mark.parametrize(("method", "path", "names"), _id_routes())
def test_every_route_answers_a_bad_id_as_a_missing_one(
    api: InProcess,
    two_tenants: dict[str, dict[str, str]],
    method: str,
    path: str,
    names: list[str],
) -> None:
    mine, theirs = two_tenants["mine"], two_tenants["theirs"]
    # Another kind's id where an id goes, another tenant's ids, and what an attack
    # sent: a real id with a key's suffix after it.
    wrong = {
        "tenant_id": [theirs["endpoint_id"], mine["delivery_id"]],
        "endpoint_id": [
            mine["delivery_id"],
            theirs["endpoint_id"],
            f"{mine['endpoint_id']}:deliveries",
            f"{mine['endpoint_id']}:health",
            mine["endpoint_id"].upper(),
        ],
        "delivery_id": [
            mine["endpoint_id"],
            theirs["delivery_id"],
            f"{mine['delivery_id']}:attempts",
            mine["delivery_id"].upper(),
        ],
    }
    for name in names:
        for value in HOSTILE + wrong[name]:
            ids = {**mine, name: value}
            url = path.format(**{key: urllib.parse.quote(v, safe="") for key, v in ids.items()})
            answer = api.call(method, url, json=_body(path, method))
            assert answer.status_code == 404, (method, url[:200], answer.text[:300])
            assert answer.json() == _missing(name, value), (method, url[:200])


def test_ids_in_queries_and_bodies(api: InProcess, two_tenants: dict[str, dict[str, str]]) -> None:
    mine, theirs = two_tenants["mine"], two_tenants["theirs"]
    listing = f"/api/v1/tenants/{mine['tenant_id']}/deliveries?endpoint_id="
    for value in [*HOSTILE, theirs["endpoint_id"], mine["delivery_id"], f"{mine['endpoint_id']}:x"]:
        answer = api.call("GET", listing + urllib.parse.quote(value, safe=""))
        assert answer.status_code == 404 and answer.json() == _missing("endpoint_id", value)
    for value in HOSTILE:
        after = api.call("GET", "/api/v1/tenants?after=" + urllib.parse.quote(value, safe=""))
        assert after.status_code == 422 and after.json()["error"]["field"] == "after", after.text
        made = api.call("POST", "/api/v1/tenants", json={"id": value})
        assert made.status_code == 422 and made.json()["error"]["field"] == "id", made.text
    # What a well-formed id of the same kind gets, found or not: the check keeps nothing out.
    listed = api.call("GET", listing + mine["endpoint_id"])
    assert [d["id"] for d in listed.json()["data"]] == [mine["delivery_id"]]


def test_the_stores_check_before_asking_redis() -> None:
    """On a Redis that does not answer: a malformed id is not found without a word to
    Redis (what the CLI and the Python API get), a well-formed one reaches it."""
    system = System(Settings(redis_url="redis://127.0.0.1:1/0"))
    since, until = now() - timedelta(days=1), now()
    calls: list[tuple[Callable[..., object], tuple[object, ...], dict[str, object]]] = [
        (system.tenants.get, (), {}),
        (system.tenants.delete, (), {}),
        (system.endpoints.get, (), {}),
        (system.endpoints.all, (), {}),
        (system.endpoints.update, ({"description": "x"},), {}),
        (system.endpoints.rotate_secret, (timedelta(0),), {}),
        (system.endpoints.stop_deliveries, ("x",), {}),
        (system.deliveries.get, (), {}),
        (system.deliveries.start_cycle, (), {}),
        (system.deliveries.exhausted, (since, until), {}),
        (Producer(system).redeliver, (), {}),
        (Producer(system).recover, (since,), {}),
    ]
    by_name: list[tuple[Callable[..., object], str]] = [
        (system.deliveries.listing, "tenant"),
        (system.deliveries.listing, "endpoint_id"),
        (partial(system.deliveries.stats, 60), "tenant"),
    ]
    for value in HOSTILE:
        for call, after, keywords in calls:
            with pytest.raises(NotFound):
                call(value, *after, **keywords)
        for call, name in by_name:
            with pytest.raises(NotFound):
                call(**{name: value})
    # The stores share this client: a well-formed id does reach it (and fails).
    with pytest.raises(Exception) as raised:
        system.endpoints.get(new_endpoint_id())
    assert not isinstance(raised.value, NotFound), raised.value


def test_what_is_made_has_the_format_that_is_checked() -> None:
    endpoint_id, made = new_endpoint_id(), delivery_id("evt_1", "https://x.example/", None)
    assert checked_endpoint_id(endpoint_id) == endpoint_id
    assert checked_delivery_id(made) == made == delivery_id("evt_1", "https://x.example/", None)
    assert checked_tenant_id("acct_42:eu.1") == check_tenant_id("acct_42:eu.1")
    for bad in ("", "_acct", "a" * 129, "acct\n", "acct 1", "{acct}"):
        with pytest.raises(TenantNotFound):
            checked_tenant_id(bad)
    with pytest.raises(EndpointNotFound):
        checked_endpoint_id(endpoint_id + "\n")
    with pytest.raises(DeliveryNotFound):
        checked_delivery_id(made.upper())
    # The document states the same patterns (JavaScript's regex dialect reads them alike).
    assert (TENANT_ID, ENDPOINT_ID, DELIVERY_ID) == (
        r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
        r"^ep_[0-9a-f]{24}$",
        r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    )
