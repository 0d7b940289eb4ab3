"""Errors at the HTTP boundary: every one is JSON, ``{"error": {"code", "message",
"field"?}}``, with the status its kind deserves. The package's own errors are
translated here, so a route raises what the stores raise."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from ..errors import (
    ArchiveUnavailable,
    DeliveryConflict,
    DeliveryFinished,
    EndpointDisabled,
    EnqueueFailed,
    InvalidInput,
    NotFound,
    TenantExists,
    WebhooksError,
)
from ..storage.connection import UNAVAILABLE

__all__ = [
    "STATUSES",
    "ApiError",
    "BodyTooLarge",
    "Error",
    "allowed_methods",
    "error_response",
    "every_route",
    "install",
    "too_large",
]


class ErrorDetail(BaseModel):
    """What went wrong, for people and for code."""

    code: str = Field(
        description="A short word to branch on: unauthorized, not_found, invalid, conflict, ..."
    )
    message: str = Field(description="One line for people; input it repeats is cut and escaped.")
    field: str | None = Field(
        None, description="The refused input's dotted name (url, headers.X), when one is to blame."
    )


class Error(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail


#: Every error status the API answers, and when: the OpenAPI document declares each
#: on the routes that can answer it (:func:`webhooks.web.app.create_app`).
STATUSES = {
    401: "No valid bearer token or session, or the token given is not valid or has expired.",
    403: "The operator's alone (operator_only), or, with a session cookie, a change without "
    "its X-CSRF-Token (csrf) or from another site (cross_site).",
    404: "Not found: an id that does not exist, one that is another tenant's, or one that "
    "cannot be an id of its kind (ids are format-checked before use, and all three get this "
    "same answer).",
    409: "Conflict: the id is taken, the event id was sent with another body, the "
    "endpoint is disabled, or the delivery to skip is finished already.",
    413: "The body is over WEBHOOKS_MAX_PAYLOAD_BYTES.",
    422: "Refused input: field names it, the message says why (a body that is not JSON included).",
    429: "Too many redeliver and recover calls this minute for the tenant, or test events "
    "for the endpoint; Retry-After says when to try again.",
    500: "The server failed; it is logged.",
    503: "Redis or the archive did not answer; retrying the same request is safe.",
}


class ApiError(Exception):
    """An HTTP error raised by a route: status, a short code and a message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}


class BodyTooLarge(Exception):
    """A request body went over the limit while a route read it."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def too_large(limit: int) -> JSONResponse:
    return error_response(
        413,
        "too_large",
        f"the body is over WEBHOOKS_MAX_PAYLOAD_BYTES ({limit:,} bytes)",
        headers={"Connection": "close"},
    )


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _webhooks_error(exc: WebhooksError) -> JSONResponse:
    if isinstance(exc, TenantExists | DeliveryConflict | DeliveryFinished):
        return error_response(409, "conflict", str(exc), exc.field)
    if isinstance(exc, InvalidInput):
        return error_response(422, "invalid", str(exc), exc.field)
    if isinstance(exc, NotFound):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, EndpointDisabled):
        return error_response(409, "endpoint_disabled", str(exc))
    if isinstance(exc, (EnqueueFailed, ArchiveUnavailable)):
        return error_response(503, "unavailable", str(exc))
    return error_response(400, "refused", str(exc))


def every_route(app: FastAPI) -> list[BaseRoute]:
    """The application's routes, those of its included routers among them (FastAPI
    keeps an included router as one entry of ``app.routes``)."""
    return [context.original_route for context in iter_route_contexts(app.routes)]


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """The methods some route answers at the request's path: what a 405's ``Allow``
    lists (RFC 9110). Starlette's own names only the first route that matched the path,
    though a path's methods are often routes of their own (GET and POST /tenants)."""
    methods: set[str] = set()
    for route in every_route(app):
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                methods |= route.methods
    if "GET" in methods:
        methods.add("HEAD")  # answered as GET is (webhooks.web.app.HeadAsGet)
    # Only the static files' mount answers a path no route matches; it serves reads.
    return sorted(methods) or ["GET", "HEAD"]


def _field(location: tuple[Any, ...]) -> str:
    """A FastAPI error location as our dotted field names (``url``, ``headers.X``)."""
    parts = [str(part) for part in location]
    if parts and parts[0] in ("body", "query", "path"):
        parts = parts[1:]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    """Register the translations on ``app``."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return error_response(
            exc.status, exc.code, exc.message, exc.field, {**headers, **exc.headers}
        )

    @app.exception_handler(WebhooksError)
    async def webhooks_error(request: Request, exc: WebhooksError) -> JSONResponse:
        return _webhooks_error(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":  # its location is a position in the body
            return error_response(422, "invalid", "body: is not valid JSON", "body")
        field = _field(tuple(first.get("loc", ())))
        if field == "body" and "json" not in request.headers.get("content-type", ""):
            return error_response(
                422,
                "invalid",
                "body: must be JSON, sent with Content-Type: application/json",
                field,
            )
        return error_response(422, "invalid", f"{field}: {first.get('msg', 'invalid')}", field)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI wraps what reading raised
            return too_large(exc.__cause__.limit)
        if exc.status_code == 400:
            # FastAPI's "error parsing the body" (JSON that is not UTF-8, say): refused
            # input like any other, with the answer the document declares for it.
            return error_response(422, "invalid", "body: is not valid JSON", "body")
        if exc.status_code == 405:
            allow = ", ".join(allowed_methods(request.app, request.scope))
            message = f"{request.method} is not allowed here; allowed: {allow}"
            return error_response(405, "method_not_allowed", message, headers={"Allow": allow})
        codes = {404: "not_found"}
        return error_response(exc.status_code, codes.get(exc.status_code, "error"), str(exc.detail))

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return too_large(exc.limit)

    async def redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
        return error_response(
            503, "unavailable", "Redis did not answer; retrying the same request is safe"
        )

    for kind in UNAVAILABLE:
        app.add_exception_handler(kind, redis_unavailable)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Logged by the server with its traceback; the client gets JSON like every error.
        return error_response(500, "internal", "the server failed; it is logged")
