"""The web application: the JSON API, the console and portal pages, and their guards.

- Every answer carries a Content-Security-Policy that allows only this server's own
  scripts and styles, never inline script, and is not to be cached or framed.
- A request body over ``WEBHOOKS_MAX_PAYLOAD_BYTES`` is refused with a 413 before a
  route reads it.
- The pages are static files shipped in the package (no CDN, no build step): one
  HTML page and a little plain JavaScript that renders with ``textContent`` only.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from ..events import event_schema
from ..metrics import CONTENT_TYPE, exposition
from ..settings import get_settings
from ..storage.connection import get_redis
from . import api
from .auth import operator, principal
from .errors import BodyTooLarge, install, too_large

__all__ = ["create_app"]

STATIC = resources.files("webhooks.web") / "static"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class Guard:
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


def _page() -> FileResponse:
    return FileResponse(str(STATIC / "page.html"), media_type="text/html")


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the event schema (every rule the validator enforces
    that JSON Schema can state) as ``Event`` among its components."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        events = event_schema(ref_template="#/components/schemas/{model}")
        events.pop("$schema", None)
        components = document.setdefault("components", {}).setdefault("schemas", {})
        components.update(events.pop("$defs", {}))
        components["Event"] = events
        app.openapi_schema = document
    return app.openapi_schema


def create_app() -> FastAPI:
    """The application ``webhooks serve`` runs."""
    app = FastAPI(
        title="webhooks",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        description="Webhook delivery on Celery and Redis: tenants, endpoints, events, "
        "deliveries and their attempts. Authenticate with `Authorization: Bearer <token>`: "
        "the operator's WEBHOOKS_API_TOKEN, or a portal token for one tenant.",
    )
    install(app)
    app.include_router(api.router)

    @app.get("/healthz", tags=["health"], summary="Whether Redis answers")
    def healthz() -> JSONResponse:
        try:
            get_redis().ping()
        except Exception:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=Response,
        summary="Prometheus metrics of the whole cluster (the operator's, unless "
        "WEBHOOKS_METRICS_PUBLIC=true)",
        responses={200: {"content": {CONTENT_TYPE: {}}}},
    )
    def metrics(request: Request) -> Response:
        if not get_settings().metrics_public:
            operator(principal(request))
        return Response(exposition(), media_type=CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console")

    for base in ("/portal", "/console"):
        app.add_api_route(base, _page, include_in_schema=False)
        app.add_api_route(base + "/{path:path}", _page, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(Guard, limit=get_settings().max_payload_bytes)
    return app
