"""The JSON API under ``/api/v1``: tenants, endpoints, events, deliveries, stats, and
the session a page signs in with.

Routes are thin: they check who is asking (:mod:`.auth`), hand the input to the
same stores and producer calls the CLI uses, and shape the answer. Validation
messages are the stores' own, so the API, the CLI and the Python API refuse the
same input in the same words; errors become JSON in :mod:`.errors`.

Scope before role: a route with another tenant's id in its path is a 404 for a
portal token, whatever the route; a route that is the operator's alone is a 403
for a tenant's own id.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ..clock import isoformat, now
from ..errors import EndpointNotFound, InvalidInput
from ..events import EVENT_TYPES, catalog, loads_event
from ..guard import MAX_URL_LENGTH
from ..ids import TENANT_ID
from ..models import FINAL_STATUSES, Attempt, Delivery, DeliveryStatus, Endpoint, Tenant
from ..producer import Producer
from ..retry import BackoffPolicy
from ..sending.attempt import TEST_HEADERS, webhook_headers
from ..settings import Settings
from ..storage.activity import WINDOWS, ActivityReport, EndpointActivity
from ..storage.deliveries import Position
from ..storage.endpoints import (
    FORBIDDEN_HEADERS,
    HEADER_NAME,
    HEADER_VALUE,
    MAX_DESCRIPTION,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    MAX_RATE_LIMIT,
)
from ..system import System
from .auth import (
    SESSION_BEARER,
    Principal,
    Who,
    bearer_session_id,
    check_origin,
    grant_of,
    operator,
    session_cookie,
    tenant_scope,
    token_principal,
)
from .deps import Deliveries, Endpoints, Sessions, SettingsDep, SystemDep, Tenants
from .errors import STATUSES, ApiError, Error

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")

Operator = Annotated[Principal, Depends(operator)]
TenantId = Annotated[str, Depends(tenant_scope)]

#: The most items one page of a listing holds.
PAGE_LIMIT = 200


def _answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's own error answers, for the document; those every route of its kind
    gives (401, 404 for an id, 422 for input...) are added by ``webhooks.web.app``."""
    return {status: {"model": Error, "description": STATUSES[status]} for status in statuses}


def _optional(description: str, **schema: Any) -> Any:
    """A field that may be left out but not sent as null: no default in the document,
    since null is refused."""

    def extra(found: dict[str, Any]) -> None:
        found.pop("default", None)
        found.update(schema)

    return Field(None, description=description, json_schema_extra=extra)


# What the stores check, as JSON Schema states it, so that the document says what is
# refused. A rule no schema can state is in the description: the networks a URL may
# reach (WEBHOOKS_ALLOWED_NETWORKS), a header given twice in two cases.
_URL: dict[str, Any] = {
    "minLength": 1,
    "maxLength": MAX_URL_LENGTH,
    "pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s\x00-\x1f\x7f]+$",
}
#: Latin-1 characters str.isprintable refuses: C0 and C1 controls, DEL, NBSP, soft hyphen.
_PRINTABLE = r"^[^\x00-\x1f\x7f-\xa0\xad]*$"


def _any_case(name: str) -> str:
    return "".join(f"[{char.upper()}{char.lower()}]" if char.isalpha() else char for char in name)


_OURS = "|".join(_any_case(name) for name in sorted(FORBIDDEN_HEADERS))
_HEADERS = {
    "maxProperties": MAX_HEADERS,
    "propertyNames": {"pattern": rf"^(?!(?:{_OURS})$|{_any_case('webhook-')}){HEADER_NAME}$"},
    "additionalProperties": {"type": "string", "pattern": f"^(?:{HEADER_VALUE})?$"},
}
_HEADERS_SAID = (
    f"at most {MAX_HEADERS}, each name and value together at most {MAX_HEADER_BYTES:,} "
    "bytes, none of the names webhooks sets itself, values visible Latin-1 with no "
    "space at either end"
)


def _headers_or_null(schema: dict[str, Any]) -> None:
    schema.pop("default", None)
    schema["anyOf"] = [{"type": "object", **_HEADERS}, {"type": "null"}]


def _event_types(schema: dict[str, Any]) -> None:
    """Only registered types; read when the document is made, after every module
    registered its own."""
    schema.pop("default", None)
    schema["anyOf"] = [
        {"type": "array", "items": {"type": "string", "enum": sorted(EVENT_TYPES)}},
        {"type": "null"},
    ]


_RATE_LIMIT_SAID = (
    f"Deliveries a second at most, across all workers (at most {MAX_RATE_LIMIT:,}); "
    "null: no limit. Deliveries over it wait their turn without using an attempt."
)


def _rate_limit(schema: dict[str, Any]) -> None:
    schema.pop("default", None)
    schema["anyOf"] = [
        {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_RATE_LIMIT},
        {"type": "null"},
    ]


class _Input(BaseModel):
    """A request body: unknown keys are refused, so a misspelt field is never ignored."""

    model_config = ConfigDict(extra="forbid")


class TenantIn(_Input):
    """A tenant to register."""

    id: str = Field(
        description="The producer's own id for the customer, such as acct_42.",
        json_schema_extra={"pattern": TENANT_ID},
    )
    name: str = Field(
        "",
        description="A name for people: at most 200 printable characters.",
        json_schema_extra={"maxLength": 200, "pattern": _PRINTABLE},
    )


class EndpointIn(_Input):
    """An endpoint to add; its secret is made here and shown once."""

    url: str = Field(
        description="Where to POST events: an http(s) URL to a network "
        "WEBHOOKS_ALLOWED_NETWORKS allows.",
        json_schema_extra={**_URL},
    )
    event_types: list[str] | None = Field(
        None,
        description="The event types to send; null or absent: every type.",
        json_schema_extra=_event_types,
    )
    description: str = Field(
        "",
        description="A note for people (at most 1,000 characters).",
        json_schema_extra={"maxLength": MAX_DESCRIPTION},
    )
    headers: dict[str, str] | None = Field(
        None,
        description="Headers sent with every attempt, such as the receiver's own "
        f"credentials; their values are never shown again: {_HEADERS_SAID}.",
        json_schema_extra=_headers_or_null,
    )
    rate_limit: float | None = Field(
        None, strict=True, description=_RATE_LIMIT_SAID, json_schema_extra=_rate_limit
    )


class EndpointPatch(_Input):
    """The endpoint fields to change; those left out stay as they are."""

    url: str = _optional("Where to POST events: an http(s) URL.", **_URL)
    event_types: list[str] | None = Field(
        None,
        description="The event types to send; null: every type.",
        json_schema_extra=_event_types,
    )
    description: str = _optional(
        "A note for people (at most 1,000 characters).", maxLength=MAX_DESCRIPTION
    )
    headers: dict[str, str] = _optional(
        f"Headers sent with every attempt, replacing them all: {_HEADERS_SAID}.", **_HEADERS
    )
    enabled: bool = _optional(
        "false stops sending and ends the retries of its unfinished deliveries; true sends again."
    )
    rate_limit: float | None = Field(
        None, strict=True, description=_RATE_LIMIT_SAID, json_schema_extra=_rate_limit
    )


class RecoverIn(_Input):
    """The window of creation times whose exhausted deliveries start again."""

    since: AwareDatetime = Field(description="Start of the window (ISO-8601 with an offset).")
    until: AwareDatetime | None = Field(None, description="End of the window; default: now.")


class SessionIn(_Input):
    """A token to trade for a session cookie."""

    token: str = Field(max_length=4096, description="The operator's token or a portal token.")
    embedded: bool = Field(
        False,
        description="true (a portal framed in another site's page, which gets no cookie): "
        "no cookie is set, and the answer's session_token is sent as "
        "`Authorization: Bearer <session_token>` instead. Portal tokens only.",
    )


class DeliveryList(BaseModel):
    """One page of deliveries."""

    data: list[dict[str, Any]] = Field(
        description="Deliveries without their attempt lists: "
        "attempt_count and last_attempt instead."
    )
    next_cursor: str | None = Field(
        description="Pass as cursor for the next page; null: this is the last."
    )


def _take(system: System, name: str, scope: str, limit: int, what: str) -> None:
    """Take one use of the rate limit ``name`` for ``scope`` this minute, or a 429 with
    Retry-After; ``what``: the limit in words, for the message."""
    wait = system.limits.take(name, scope, limit)
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"at most {limit} {what}; try again in {math.ceil(wait)} s",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


def _take_redeliver(system: System, who: Principal, tenant_id: str) -> None:
    """Take one of the tenant's redeliver calls for this minute, or a 429: each makes
    our workers POST to a URL the tenant chose, so a tenant may not make them hammer it.
    """
    settings = system.settings
    if who.is_operator:
        name, limit = "redeliver-operator", settings.operator_redeliver_per_minute
    else:
        name, limit = "redeliver", settings.redeliver_per_minute
    _take(system, name, tenant_id, limit, "redeliver and recover calls a minute")


# --- Sessions ---------------------------------------------------------------------


def _session_body(tenant_id: str | None, csrf: str, expires_at: float) -> dict[str, Any]:
    return {
        "role": "operator" if tenant_id is None else "tenant",
        "tenant_id": tenant_id,
        "csrf_token": csrf,
        "expires_at": isoformat(datetime.fromtimestamp(expires_at, UTC)),
    }


@router.post(
    "/session",
    tags=["session"],
    responses=_answers(401, 403),
    summary="Trade a token for a session cookie",
)
def create_session(body: SessionIn, request: Request, system: SystemDep) -> JSONResponse:
    """The page's sign-in: a token (from a portal link's fragment, or the operator's)
    becomes an HttpOnly, SameSite=Strict cookie (``__Host-`` and Secure under HTTPS),
    and the answer carries the CSRF token that state-changing requests must send in
    ``X-CSRF-Token``. Another site may not sign a browser in (to its own account, say).
    With ``embedded`` (a framed portal), no cookie: ``session_token`` is the credential."""
    check_origin(request)
    try:
        who = token_principal(system, body.token)
    except ApiError:
        raise ApiError(401, "unauthorized", "the token is not valid, or has expired") from None
    if body.embedded and who.is_operator:
        # Only the portal may be framed (its CSP); the operator's session stays a cookie.
        raise InvalidInput("embedded", "is for portal links, not the operator's token")
    lasts = system.settings.session_hours * 3600
    expires_at = time.time() + lasts
    if who.expires_at is not None:  # a portal session ends with its link
        expires_at = min(expires_at, who.expires_at)
    grant = grant_of(system, who.tenant_id)
    made = (
        None
        if grant is None
        else system.sessions.create(
            who.tenant_id, expires_at, grant=grant, tenant_created_at=who.tenant_created_at
        )
    )
    if made is None:  # the tenant was deleted (or registered again) since the token's check
        raise ApiError(401, "unauthorized", "the token is not valid, or has expired")
    session_id, session = made
    if body.embedded:
        return _embedded_session(who, session_id, session.csrf, expires_at)
    response = JSONResponse(_session_body(who.tenant_id, session.csrf, expires_at), status_code=201)
    response.set_cookie(
        session_cookie(request),
        session_id,
        max_age=max(1, int(expires_at - time.time())),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get(
    "/session",
    tags=["session"],
    responses={
        404: {"model": Error, "description": "This request came with a token, not a session."}
    },
    summary="The current session",
)
def read_session(who: Who) -> dict[str, Any]:
    if who.session is None:
        raise ApiError(404, "not_found", "this request came with a token, not a session")
    return _session_body(who.tenant_id, who.session.csrf, who.session.expires_at)


@router.delete("/session", tags=["session"], status_code=204, summary="Sign out")
def delete_session(request: Request, who: Who, sessions: Sessions) -> Response:
    if who.session is not None:
        sessions.delete(
            bearer_session_id(request) or request.cookies.get(session_cookie(request), "")
        )
    response = Response(status_code=204)
    response.delete_cookie(
        session_cookie(request),
        path="/",
        secure=request.url.scheme == "https",  # browsers drop a __Host- cookie without it
        httponly=True,
        samesite="strict",
    )
    return response


# --- Tenants ----------------------------------------------------------------------


@router.post(
    "/tenants",
    tags=["tenants"],
    status_code=201,
    response_model=Tenant,
    responses=_answers(409),
    summary="Register a tenant",
)
def create_tenant(body: TenantIn, _: Operator, tenants: Tenants) -> Tenant:
    return tenants.add(body.id, body.name)


@router.get("/tenants", tags=["tenants"], summary="List tenants, ordered by id")
def list_tenants(
    _: Operator,
    tenants: Tenants,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT)] = 50,
    after: Annotated[str | None, Query(pattern=TENANT_ID)] = None,
) -> dict[str, Any]:
    """Pages by id: pass the ``next_after`` of one page as ``after`` for the next."""
    found = tenants.list(limit + 1, after)
    page = found[:limit]
    return {
        "data": [tenant.model_dump(mode="json") for tenant in page],
        "next_after": page[-1].id if len(found) > limit else None,
    }


@router.get("/tenants/{tenant_id}", tags=["tenants"], response_model=Tenant, summary="One tenant")
def read_tenant(tenant_id: TenantId, tenants: Tenants) -> Tenant:
    return tenants.get(tenant_id)


@router.delete(
    "/tenants/{tenant_id}", tags=["tenants"], summary="Delete a tenant and everything it owns"
)
def delete_tenant(tenant_id: TenantId, _: Operator, tenants: Tenants) -> dict[str, Any]:
    forgotten = tenants.delete(tenant_id)
    return {
        "tenant_id": forgotten.tenant_id,
        "deleted": True,
        "endpoints": forgotten.endpoints,
        "deliveries": forgotten.deliveries,
    }


# --- Endpoints --------------------------------------------------------------------


@router.get(
    "/tenants/{tenant_id}/endpoints",
    tags=["endpoints"],
    summary="The tenant's endpoints, oldest first",
)
def list_endpoints(tenant_id: TenantId, endpoints: Endpoints, system: SystemDep) -> dict[str, Any]:
    return {"data": _shown(system, endpoints.all(tenant_id))}


def _shown(system: System, endpoints: list[Endpoint]) -> list[dict[str, Any]]:
    """Endpoints as shown, each with the pace adaptive pacing holds it at (null: at its
    limits)."""
    paces = system.gate.paces_of([endpoint.id for endpoint in endpoints])
    return [
        {**endpoint.public(), "pace": pace.public() if (pace := paces[endpoint.id]) else None}
        for endpoint in endpoints
    ]


@router.post(
    "/tenants/{tenant_id}/endpoints",
    tags=["endpoints"],
    status_code=201,
    summary="Add an endpoint; its secret is in this answer only",
)
def create_endpoint(tenant_id: TenantId, body: EndpointIn, endpoints: Endpoints) -> dict[str, Any]:
    endpoint, secret = endpoints.add(
        body.url,
        body.event_types,
        body.description,
        tenant=tenant_id,
        headers=body.headers,
        rate_limit=body.rate_limit,
    )
    return {**endpoint.public(), "secret": secret}


@router.get(
    "/tenants/{tenant_id}/endpoints/{endpoint_id}",
    tags=["endpoints"],
    summary="One endpoint (secrets and header values masked)",
)
def read_endpoint(
    tenant_id: TenantId, endpoint_id: str, endpoints: Endpoints, system: SystemDep
) -> dict[str, Any]:
    (shown,) = _shown(system, [endpoints.get(endpoint_id, tenant_id)])
    return shown


@router.patch(
    "/tenants/{tenant_id}/endpoints/{endpoint_id}", tags=["endpoints"], summary="Change an endpoint"
)
def update_endpoint(
    tenant_id: TenantId,
    endpoint_id: str,
    body: EndpointPatch,
    who: Who,
    store: Endpoints,
    system: SystemDep,
) -> dict[str, Any]:
    """Only the fields sent change; ``headers`` replaces them all. Every field is
    checked before anything is written."""
    changes = {name: getattr(body, name) for name in body.model_fields_set - {"enabled"}}
    endpoint: Endpoint = store.get(endpoint_id, tenant_id)
    if changes:
        endpoint = store.update(endpoint_id, changes, tenant_id)
    if body.enabled is True and not endpoint.enabled:
        endpoint = store.enable(endpoint_id, tenant_id)
    elif body.enabled is False and endpoint.enabled:
        by = "the operator" if who.is_operator else "the customer"
        endpoint = store.disable(endpoint_id, f"disabled by {by}", tenant=tenant_id)
    (shown,) = _shown(system, [endpoint])
    return shown


@router.delete(
    "/tenants/{tenant_id}/endpoints/{endpoint_id}",
    tags=["endpoints"],
    summary="Delete an endpoint; its unfinished deliveries stop",
)
def delete_endpoint(tenant_id: TenantId, endpoint_id: str, endpoints: Endpoints) -> dict[str, Any]:
    endpoints.delete(endpoint_id, tenant_id)
    return {"endpoint_id": endpoint_id, "deleted": True}


@router.post(
    "/tenants/{tenant_id}/endpoints/{endpoint_id}/rotate-secret",
    tags=["endpoints"],
    summary="A new signing secret, in this answer only",
)
def rotate_secret(
    tenant_id: TenantId, endpoint_id: str, endpoints: Endpoints, settings: SettingsDep
) -> dict[str, Any]:
    """The old secret keeps signing for ``WEBHOOKS_SECRET_ROTATION_GRACE_SECONDS``, so the
    receiver can switch without a failed delivery."""
    grace = timedelta(seconds=settings.secret_rotation_grace_seconds)
    endpoint, secret = endpoints.rotate_secret(endpoint_id, grace, tenant_id)
    return {**endpoint.public(), "secret": secret}


@router.post(
    "/tenants/{tenant_id}/endpoints/{endpoint_id}/recover",
    tags=["endpoints"],
    status_code=202,
    responses=_answers(409, 429),
    summary="Redeliver what was exhausted in a time window",
)
def recover(
    tenant_id: TenantId, endpoint_id: str, body: RecoverIn, who: Who, system: SystemDep
) -> dict[str, Any]:
    """Every ``retries_exhausted`` delivery of the endpoint created in the window
    starts a new attempt cycle. Counts against the tenant's redeliver limit."""
    until = body.until or now()
    if body.since >= until:
        raise InvalidInput("until", "must be later than since")
    _take_redeliver(system, who, tenant_id)
    ids = Producer(system).recover(endpoint_id, body.since, until, tenant=tenant_id)
    return {"endpoint_id": endpoint_id, "delivery_ids": ids}


# --- Events -----------------------------------------------------------------------

_EVENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Event"}}},
    }
}


@router.post(
    "/tenants/{tenant_id}/events",
    tags=["events"],
    status_code=202,
    openapi_extra=_EVENT_BODY,
    responses=_answers(409, 422),
    summary="Publish an event to every endpoint of the tenant that wants it",
)
async def publish(
    tenant_id: TenantId, request: Request, _: Operator, system: SystemDep
) -> dict[str, Any]:
    """The body is the event. The answer lists a delivery per enabled endpoint whose
    filter matches (none: an empty list). Publishing the same event again creates
    nothing new and answers the same ids, so a retry after a lost answer is safe.

    An ``ordering_key`` field beside the event's own (1 to 256 characters, no control
    character) delivers it, per endpoint, in publish order with the tenant's other
    events of that key."""
    event = loads_event(await request.body())
    ordering_key = event.pop("ordering_key", None) if isinstance(event, dict) else None
    ids = await run_in_threadpool(
        Producer(system).publish, event, tenant=tenant_id, ordering_key=ordering_key
    )
    return {"delivery_ids": ids}


# --- Deliveries -------------------------------------------------------------------


def _cursor(position: Position) -> str:
    score, delivery_id = position
    return base64.urlsafe_b64encode(f"{score!r} {delivery_id}".encode()).decode().rstrip("=")


def _position(cursor: str) -> Position:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score, delivery_id = text.split(" ", 1)
        value = float(score)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput("cursor", "is not a cursor this API gave") from None
    if not math.isfinite(value) or not delivery_id or len(delivery_id) > 200:
        raise InvalidInput("cursor", "is not a cursor this API gave")
    return value, delivery_id


def _summary(delivery: Delivery, attempt_count: int) -> dict[str, Any]:
    last: Attempt | None = delivery.attempts[-1] if delivery.attempts else None
    return {
        **delivery.model_dump(mode="json", exclude={"attempts"}),
        "attempt_count": attempt_count,
        "last_attempt": last.model_dump(mode="json") if last else None,
    }


@router.get(
    "/tenants/{tenant_id}/deliveries",
    tags=["deliveries"],
    responses={200: {"model": DeliveryList}},
    summary="The tenant's deliveries, newest first",
)
def list_deliveries(
    tenant_id: TenantId,
    store: Deliveries,
    endpoints: Endpoints,
    status: DeliveryStatus | None = None,
    endpoint_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
    event_id: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
) -> JSONResponse:
    """Newest first: by creation time, or with ``status`` by when they reached it.
    Pages never repeat an item, even while deliveries come and change; a delivery
    that changes status while you page may move to the first page of its new status.
    With ``endpoint_id`` and ``status`` together a page may hold fewer than ``limit``
    items and still have a ``next_cursor``. Finished deliveries moved to the archive
    are listed as the others are.

    With ``event_id``: the deliveries of that event (the producer's id), one per
    endpoint, in one page (other filters still apply; an unknown id gives none)."""
    after = _position(cursor) if cursor is not None else None
    if endpoint_id is not None:
        endpoints.get(endpoint_id, tenant_id)  # another tenant's: not found
    if event_id is not None:
        found = [
            (delivery, count)
            for delivery, count in store.by_event(event_id, tenant_id)
            if (status is None or delivery.status is status)
            and (endpoint_id is None or delivery.endpoint_id == endpoint_id)
        ]
        return JSONResponse({"data": [_summary(*item) for item in found], "next_cursor": None})
    found, position = store.listing(
        status, limit, tenant=tenant_id, endpoint_id=endpoint_id, after=after
    )
    # Straight to JSON: the items are built from validated models already, and a
    # second pass through the response model cost as much as reading them.
    return JSONResponse(
        {
            "data": [_summary(*item) for item in found],
            "next_cursor": _cursor(position) if position is not None else None,
        }
    )


@router.get(
    "/tenants/{tenant_id}/deliveries/{delivery_id}",
    tags=["deliveries"],
    response_model=Delivery,
    summary="One delivery with every attempt",
)
def read_delivery(tenant_id: TenantId, delivery_id: str, store: Deliveries) -> Response:
    """The same JSON as ``webhooks show --json``."""
    delivery = store.get(delivery_id, tenant_id)
    return Response(delivery.model_dump_json(), media_type="application/json")


@router.post(
    "/tenants/{tenant_id}/deliveries/{delivery_id}/redeliver",
    tags=["deliveries"],
    status_code=202,
    responses=_answers(409, 429),
    summary="Start a new attempt cycle, whatever the status",
)
def redeliver(tenant_id: TenantId, delivery_id: str, who: Who, system: SystemDep) -> dict[str, Any]:
    """Same ``webhook-id``; earlier attempts are kept and new ones numbered on. Limited
    per tenant (``WEBHOOKS_REDELIVER_PER_MINUTE``; the operator's own limit is
    ``WEBHOOKS_OPERATOR_REDELIVER_PER_MINUTE``)."""
    _take_redeliver(system, who, tenant_id)
    Producer(system).redeliver(delivery_id, tenant=tenant_id)
    return {"delivery_id": delivery_id, "redelivered": True}


@router.post(
    "/tenants/{tenant_id}/deliveries/{delivery_id}/skip",
    tags=["deliveries"],
    response_model=Delivery,
    responses=_answers(409),
    summary="Give up on an unfinished delivery; the next of its ordering key starts",
)
def skip(tenant_id: TenantId, delivery_id: str, _: Operator, store: Deliveries) -> Response:
    """Marks it ``retries_exhausted`` (what ``webhooks skip`` does); the operator's only.
    A delivery that is finished already is refused (409)."""
    delivery = store.skip(delivery_id, tenant_id)
    return Response(delivery.model_dump_json(), media_type="application/json")


# --- Stats ------------------------------------------------------------------------


@router.get("/stats", tags=["stats"], summary="Deliveries by status, overdue and parked")
def stats(_: Operator, store: Deliveries, settings: SettingsDep) -> dict[str, int]:
    return store.stats(overdue_after=settings.recovery_seconds)


@router.get(
    "/tenants/{tenant_id}/stats",
    tags=["stats"],
    summary="The tenant's deliveries by status, and overdue",
)
def tenant_stats(tenant_id: TenantId, store: Deliveries, settings: SettingsDep) -> dict[str, int]:
    return store.stats(overdue_after=settings.recovery_seconds, tenant=tenant_id)


# --- The embedded and branded portal -----------------------------------------------


def _embedded_session(
    who: Principal, session_id: str, csrf: str, expires_at: float
) -> JSONResponse:
    """A portal framed in another site's page: the session's credential in the answer,
    for the page to keep in memory and send as a bearer token, and no cookie."""
    return JSONResponse(
        {
            **_session_body(who.tenant_id, csrf, expires_at),
            "session_token": SESSION_BEARER + session_id,
        },
        status_code=201,
    )


class Brand(BaseModel):
    """How the portal presents itself: the operator's WEBHOOKS_PORTAL_BRAND_* settings."""

    name: str | None = Field(description="Shown instead of 'webhooks'; null: the default.")
    logo_url: str | None = Field(
        description="An https:// image shown beside the name.",
        json_schema_extra={"pattern": "^https://"},
    )
    accent_color: str | None = Field(
        description="Links' and main buttons' colour, #rrggbb.",
        json_schema_extra={"pattern": "^#[0-9a-f]{6}$"},
    )


# --- What a delivery sent, and activity -------------------------------------------

#: What a masked header value shows: the name says what it was, never its value.
_MASKED = "…"


class SentHeader(BaseModel):
    """One request header, as sent; a secret one masked."""

    name: str
    value: str
    masked: bool = Field(
        description="true: the value is hidden (a signature or the endpoint's own)."
    )


class SentAttempt(BaseModel):
    """When one attempt went, as its headers said."""

    number: int
    webhook_timestamp: str = Field(description="Its webhook-timestamp: Unix seconds.")


class UpcomingAttempt(BaseModel):
    """An attempt still to come, if each one before it fails."""

    number: int
    due_at: str = Field(
        description="ISO-8601; the first is the scheduled time, the later "
        "ones the nominal schedule's (jitter and Retry-After may push them)."
    )


class RetrySchedule(BaseModel):
    """The attempts of the current cycle: made, and still to come."""

    attempts_made: int = Field(description="Attempts made in this cycle (redeliver starts one).")
    max_attempts: int
    upcoming: list[UpcomingAttempt]


class SentRequest(BaseModel):
    """What a delivery POSTs: its exact body, its headers, and its retry schedule."""

    delivery_id: str
    body: str = Field(description="The exact body every attempt POSTs.")
    headers: list[SentHeader] = Field(
        description="The latest attempt's request headers (the next one's before any): "
        "the signature and the endpoint's own header values masked."
    )
    attempts: list[SentAttempt]
    retry_schedule: RetrySchedule


def _sent_headers(
    delivery: Delivery, body: bytes, endpoint: Endpoint | None, timestamp: int | None
) -> list[SentHeader]:
    """The headers an attempt went with, rebuilt as the sender builds them
    (``Sender.attempt``): the endpoint's own (as it has them now), then ours."""
    names = endpoint.headers if endpoint is not None else {}
    own = [SentHeader(name=name, value=_MASKED, masked=True) for name in names]
    stamp = str(timestamp) if timestamp is not None else "(when it is sent)"
    ours = {
        **(TEST_HEADERS if delivery.test else {}),
        "Accept-Encoding": "identity",
        "Content-Length": str(len(body)),
        **webhook_headers(delivery.id, stamp),
    }
    shown = own + [SentHeader(name=name, value=value, masked=False) for name, value in ours.items()]
    if delivery.endpoint_id is not None:  # a bare URL's delivery is not signed
        shown.append(SentHeader(name="webhook-signature", value="v1," + _MASKED, masked=True))
    return shown


def _schedule(delivery: Delivery, settings: Settings) -> RetrySchedule:
    policy = BackoffPolicy.from_settings(settings)
    made = len(delivery.attempts) - delivery.cycle_offset
    upcoming: list[UpcomingAttempt] = []
    if delivery.status not in FINAL_STATUSES and delivery.next_attempt_at is not None:
        upcoming = [
            UpcomingAttempt(number=delivery.cycle_offset + number, due_at=isoformat(due))
            for number, due in policy.ahead(made, delivery.next_attempt_at)
        ]
    return RetrySchedule(attempts_made=made, max_attempts=policy.max_retries + 1, upcoming=upcoming)


@router.get(
    "/tenants/{tenant_id}/deliveries/{delivery_id}/request",
    tags=["deliveries"],
    response_model=SentRequest,
    summary="What a delivery sends: its exact body, its headers and its retry schedule",
)
def sent_request(
    tenant_id: TenantId,
    delivery_id: str,
    store: Deliveries,
    endpoints: Endpoints,
    settings: SettingsDep,
) -> SentRequest:
    """The body is the exact text signed and POSTed on every attempt. The headers are
    rebuilt as the sender builds them, with each attempt's ``webhook-timestamp``; the
    signature and the values of the endpoint's own headers are never shown."""
    delivery, body = store.load(delivery_id, tenant_id)
    endpoint = None
    if delivery.endpoint_id is not None:
        with suppress(EndpointNotFound):  # deleted since: its own headers are unknown
            endpoint = endpoints.get(delivery.endpoint_id, tenant_id)
    stamps = [
        SentAttempt(number=a.number, webhook_timestamp=str(int(a.started_at.timestamp())))
        for a in delivery.attempts
    ]
    latest = int(stamps[-1].webhook_timestamp) if stamps else None
    return SentRequest(
        delivery_id=delivery.id,
        body=body.decode("utf-8", errors="replace"),
        headers=_sent_headers(delivery, body, endpoint, latest),
        attempts=stamps,
        retry_schedule=_schedule(delivery, settings),
    )


Window = Annotated[
    Literal["24h", "7d"], Query(description="The last 24 hours, or the last 7 days, hour by hour.")
]


class ActivityHour(BaseModel):
    """One hour's deliveries and attempts, by outcome."""

    hour: str = Field(description="When the hour starts, ISO-8601 in UTC.")
    delivered_first_try: int
    delivered_after_retries: int
    failed_attempts: int
    exhausted: int


class EndpointSuccess(BaseModel):
    """One endpoint's outcomes over the window."""

    endpoint_id: str
    success_rate: float | None = Field(
        description="The share of its attempts answered 2XX, 0 to 1; null: no attempt."
    )
    delivered: int
    failed_attempts: int
    exhausted: int


class TenantActivity(BaseModel):
    """A tenant's deliveries per hour by outcome, and each endpoint's success rate."""

    window: str
    buckets: list[ActivityHour] = Field(description="One per hour, oldest first.")
    endpoints: list[EndpointSuccess] = Field(description="The tenant's endpoints, oldest first.")


class AllActivity(BaseModel):
    """Every tenant's deliveries per hour by outcome."""

    window: str
    buckets: list[ActivityHour] = Field(description="One per hour, oldest first.")


def _buckets(report: ActivityReport) -> list[ActivityHour]:
    return [ActivityHour(hour=isoformat(start), **counts) for start, counts in report.hours]


@router.get(
    "/tenants/{tenant_id}/activity",
    tags=["stats"],
    response_model=TenantActivity,
    summary="The tenant's deliveries per hour by outcome, and its endpoints' success rates",
)
def tenant_activity(
    tenant_id: TenantId, system: SystemDep, endpoints: Endpoints, window: Window = "24h"
) -> TenantActivity:
    """Read from hourly counters that recording each attempt keeps (kept 8 days), so
    this costs the same however many deliveries there were. The current hour is the
    last bucket. A deleted endpoint's deliveries stay in the buckets."""
    report = system.activity.tenant(tenant_id, WINDOWS[window], now())
    rates = [
        report.endpoints.get(endpoint.id) or EndpointActivity(endpoint.id, 0, 0, 0)
        for endpoint in endpoints.all(tenant_id)
    ]
    return TenantActivity(
        window=window,
        buckets=_buckets(report),
        endpoints=[
            EndpointSuccess(
                endpoint_id=rate.endpoint_id,
                success_rate=rate.success_rate,
                delivered=rate.delivered,
                failed_attempts=rate.failed_attempts,
                exhausted=rate.exhausted,
            )
            for rate in rates
        ],
    )


@router.get(
    "/brand",
    tags=["session"],
    response_model=Brand,
    summary="The portal's name, logo and accent colour (no credentials needed)",
)
def brand(settings: SettingsDep) -> Brand:
    """Public: the portal's sign-in page is branded before anyone signs in."""
    return Brand(
        name=settings.portal_brand_name,
        logo_url=settings.portal_brand_logo_url,
        accent_color=settings.portal_brand_accent_color,
    )


@router.get(
    "/activity",
    tags=["stats"],
    response_model=AllActivity,
    summary="Every tenant's deliveries per hour by outcome",
)
def all_activity(_: Operator, system: SystemDep, window: Window = "24h") -> AllActivity:
    """The console's chart: as the tenants' own, summed over every tenant."""
    report = system.activity.everyone(WINDOWS[window], now())
    return AllActivity(window=window, buckets=_buckets(report))


# --- Event catalog and test events ------------------------------------------------


class EventTypeList(BaseModel):
    """Every registered event type."""

    data: list[dict[str, Any]] = Field(
        description="Each type's type (its name), description, schema (JSON Schema) and "
        "example (a payload that validates against the schema; null if the type's model "
        "gives none), ordered by name."
    )


def _registered_type(schema: dict[str, Any]) -> None:
    """One registered type, read when the document is made (as :func:`_event_types`);
    may be left out but not sent as null."""
    schema.pop("default", None)
    schema["enum"] = sorted(EVENT_TYPES)


class TestEventIn(_Input):
    """The test to send; the body may be left out."""

    event_type: str = Field(
        None,  # type: ignore[assignment]  # left out: the endpoint's first type; null is refused
        description="The registered event type whose example is sent; default: the "
        "endpoint's first (the first registered type for an endpoint that takes every type).",
        json_schema_extra=_registered_type,
    )


def _take_test(system: System, endpoint_id: str) -> None:
    """Take one of the endpoint's test events for this minute, or a 429: each makes our
    workers POST to a URL its tenant chose, whoever asks."""
    limit = system.settings.test_events_per_minute
    _take(system, "test-event", endpoint_id, limit, "test events a minute per endpoint")


@router.get(
    "/event-types",
    tags=["event types"],
    response_model=EventTypeList,
    summary="The event catalog: every registered type, its schema and an example",
)
def list_event_types(_: Who) -> EventTypeList:
    """Any signed-in principal may read it: the operator, or a tenant's portal."""
    return EventTypeList(data=catalog())


@router.post(
    "/tenants/{tenant_id}/endpoints/{endpoint_id}/test",
    tags=["endpoints"],
    status_code=202,
    responses=_answers(409, 429),
    summary="Send the endpoint a test event: the catalog's example, as a real delivery",
)
def send_test(
    tenant_id: TenantId,
    endpoint_id: str,
    system: SystemDep,
    body: TestEventIn | None = None,
) -> dict[str, Any]:
    """Signed, recorded and retried like any other delivery, with an event id of its
    own; the delivery's JSON and listings say ``"test": true``, and each attempt
    carries the header ``webhook-test: true``. At most
    ``WEBHOOKS_TEST_EVENTS_PER_MINUTE`` per endpoint (5), whoever asks."""
    producer = Producer(system)
    # Checked first: a refused test does not use up the endpoint's minute.
    made = producer.test_event(endpoint_id, body.event_type if body else None, tenant=tenant_id)
    _take_test(system, endpoint_id)
    return {"delivery_id": producer.send_made_test(*made)}
