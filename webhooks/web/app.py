"""The web application: the JSON API, the console and portal pages, and their guards.

- Every answer carries a Content-Security-Policy that allows only this server's own
  scripts and styles, never inline script, and is not to be cached or framed.
- A request body over ``WEBHOOKS_MAX_PAYLOAD_BYTES`` is refused with a 413 before a
  route reads it.
- The pages are static files shipped in the package (no CDN, no build step): one
  HTML page and a little plain JavaScript that renders with ``textContent`` only.
- HEAD is answered wherever GET is, as GET without the body (load balancers probe
  ``/healthz`` so); a method a path does not take is a 405 with ``Allow``.
- The OpenAPI document declares every status each route can answer, with the error
  body's schema, the ids' formats and the credentials it takes (:func:`_openapi`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from ..events import event_schema
from ..ids import DELIVERY_ID, ENDPOINT_ID, TENANT_ID
from ..metrics import CONTENT_TYPE, exposition, registry
from ..settings import Settings, origin_of
from ..system import System, get_default
from . import api
from .auth import COOKIE, operator, principal
from .errors import STATUSES, BodyTooLarge, Error, every_route, install, too_large

__all__ = ["create_app"]

STATIC = resources.files("webhooks.web") / "static"


def content_security_policy(images: str = "'self'", ancestors: str = "'none'") -> str:
    """The policy of every answer; the portal's pages may widen ``images`` (the brand's
    logo) and ``ancestors`` (the origins allowed to frame it)."""
    return (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src {images}; "
        f"connect-src 'self'; form-action 'self'; frame-ancestors {ancestors}; base-uri 'none'"
    )


CSP = content_security_policy()
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityMiddleware:
    """ASGI middleware: the security headers on every answer, and the body limit.

    A body is counted as it arrives, so a chunked upload without a Content-Length
    is stopped as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in HEADERS}
                message["headers"] = [
                    *(h for h in message.get("headers", []) if h[0].lower() not in names),
                    *HEADERS,
                ]
            await send(message)

        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(scope, receive, send_guarded)
            return
        received = 0

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_guarded(message)

        try:
            await self.app(scope, receive_counted, send_tracked)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, receive, send_guarded)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await too_large(self.limit)(scope, receive, send)


class HeadAsGet:
    """ASGI middleware: a HEAD request is routed as a GET and answered without the body,
    its headers (Content-Length included) as the GET's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # A copy: the server keeps the scope it made, and must still know it was a HEAD.
        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


# --- The portal's own headers: framed by allowed origins, and its brand's logo ------


def portal_headers(settings: Settings) -> list[tuple[bytes, bytes]] | None:
    """The security headers of the portal's pages under these settings, or None when
    they are every answer's (no origin may frame it, and no logo)."""
    ancestors = settings.portal_frame_ancestors
    logo = settings.portal_brand_logo_url
    if not ancestors and logo is None:
        return None
    # Both were checked when the settings were read: plain origins, nothing a policy
    # would read as another directive or source.
    images = "'self'" if logo is None else f"'self' {origin_of(logo)}"
    policy = content_security_policy(images, " ".join(ancestors) or "'none'")
    headers = [(b"content-security-policy", policy.encode())]
    for name, value in HEADERS:
        if name == b"content-security-policy" or (name == b"x-frame-options" and ancestors):
            continue  # X-Frame-Options cannot name origins: the policy says who may frame
        headers.append((name, value))
    return headers


def _is_portal(path: str) -> bool:
    return path == "/portal" or path.startswith("/portal/")


class PortalHeaders:
    """ASGI middleware, outside :class:`SecurityMiddleware`: the portal's pages get
    :func:`portal_headers`; the console, the API and every other answer keep theirs."""

    def __init__(self, app: ASGIApp, headers: list[tuple[bytes, bytes]]) -> None:
        self.app, self.headers = app, headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_portal(scope["path"]):
            await self.app(scope, receive, send)
            return
        names = {name for name, _ in HEADERS}

        async def send_portal(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *(h for h in message.get("headers", []) if h[0].lower() not in names),
                    *self.headers,
                ]
            await send(message)

        await self.app(scope, receive, send_portal)


def _page() -> FileResponse:
    return FileResponse(str(STATIC / "page.html"), media_type="text/html")


#: The format of each id a route takes, by the parameter's name: what the stores check
#: before the id is used (:mod:`webhooks.ids`), stated in the document.
ID_PATTERNS = {"tenant_id": TENANT_ID, "endpoint_id": ENDPOINT_ID, "delivery_id": DELIVERY_ID}
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
#: The credentials a route takes: the operator's or a portal token, or a session cookie.
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"session": []}]
_ERROR = {"$ref": "#/components/schemas/Error"}
_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def _health(status: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"status": {"type": "string", "const": status}},
        "required": ["status"],
    }


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    """Every function a route depends on, however deep."""
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _statuses(route: APIRoute, method: str, operation: dict[str, Any]) -> set[int]:
    """The error statuses a route can answer, from what it depends on and takes."""
    calls = set(_calls(route.dependant))
    places = {parameter["in"] for parameter in operation.get("parameters", [])}
    found = {413, 500, 503}  # a body over the limit, a failure, Redis away: any route
    if principal in calls:
        found.add(401)
        if method not in _SAFE:  # a session's change without its CSRF token
            found.add(403)
    if operator in calls:
        found.add(403)
    if "path" in places:  # an id: not found, or another tenant's
        found.add(404)
    if "query" in places or "requestBody" in operation:
        found.add(422)
    return found


def _declare_errors(document: dict[str, Any], routes: list[APIRoute]) -> None:
    """Each operation's error answers, with the Error body (FastAPI's own 422 schema
    is not what this API sends), the credentials it takes, and its ids' formats."""
    for route in routes:
        for method in route.methods or ():
            operation = document["paths"][route.path_format][method.lower()]
            responses = operation.setdefault("responses", {})
            for status in _statuses(route, method, operation):
                responses.setdefault(str(status), {"description": STATUSES[status]})
            for status, answer in responses.items():
                # A route's own answer for a status (healthz's 503) stays; FastAPI's
                # default 422 (its HTTPValidationError) is not what this API sends.
                content = json.dumps(answer.get("content", {}))
                if int(status) >= 400 and ("content" not in answer or _FASTAPI_422 in content):
                    answer["description"] = STATUSES[int(status)]
                    answer["content"] = {"application/json": {"schema": _ERROR}}
            operation["responses"] = dict(sorted(responses.items()))
            if principal in set(_calls(route.dependant)):
                operation["security"] = SECURITY
            if "401" in responses:
                operation["responses"]["401"]["headers"] = {
                    "WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}
                }
            if "429" in responses:
                operation["responses"]["429"]["headers"] = {
                    "Retry-After": {"schema": {"type": "string", "pattern": "^[1-9][0-9]*$"}}
                }
            for parameter in operation.get("parameters", []):
                if (pattern := ID_PATTERNS.get(parameter["name"])) is not None:
                    parameter["schema"] = {"type": "string", "pattern": pattern}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the event schema (every rule the validator enforces
    that JSON Schema can state) as ``Event`` among its components, and every error
    answer each route can give (:func:`_declare_errors`)."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        events = event_schema(ref_template="#/components/schemas/{model}")
        events.pop("$schema", None)
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas.update(events.pop("$defs", {}))
        schemas["Event"] = events
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        error = Error.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(error.pop("$defs"))
        schemas["Error"] = error
        components["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": COOKIE},
        }
        routes = [r for r in every_route(app) if isinstance(r, APIRoute) and r.include_in_schema]
        _declare_errors(document, routes)
        app.openapi_schema = document
    return app.openapi_schema


def create_app(system: System | None = None) -> FastAPI:
    """The application ``webhooks serve`` runs, serving ``system`` (the default System
    unless given): every route is handed its stores (:mod:`.deps`)."""
    system = system or get_default()
    app = FastAPI(
        title="webhooks",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        description="Webhook delivery on Celery and Redis: tenants, endpoints, events, "
        "deliveries and their attempts. Authenticate with `Authorization: Bearer <token>`: "
        "the operator's WEBHOOKS_API_TOKEN, or a portal token for one tenant.",
    )
    app.state.system = system
    install(app)
    app.include_router(api.router)
    scraped = registry(system)

    @app.get(
        "/healthz",
        tags=["health"],
        summary="Whether Redis answers",
        responses={
            200: {"content": {"application/json": {"schema": _health("ok")}}},
            503: {
                "description": "Redis did not answer.",
                "content": {"application/json": {"schema": _health("unavailable")}},
            },
        },
    )
    def healthz() -> JSONResponse:
        try:
            system.redis.ping()
        except Exception:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        summary="Prometheus metrics of the whole cluster (the operator's, unless "
        "WEBHOOKS_METRICS_PUBLIC=true)",
        responses={
            200: {"content": {CONTENT_TYPE: {}}},
            # The operator's, unless public: then anyone may read it.
            **({} if system.settings.metrics_public else {401: {}, 403: {}}),
        },
        openapi_extra={} if system.settings.metrics_public else {"security": SECURITY},
    )
    def metrics(request: Request) -> Response:
        if not system.settings.metrics_public:
            operator(principal(request, system))
        return Response(exposition(scraped), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console")

    for base in ("/portal", "/console"):
        app.add_api_route(base, _page, include_in_schema=False)
        app.add_api_route(base + "/{path:path}", _page, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(SecurityMiddleware, limit=system.settings.max_payload_bytes)
    if (portal := portal_headers(system.settings)) is not None:
        app.add_middleware(PortalHeaders, headers=portal)
    app.add_middleware(HeadAsGet)
    return app
