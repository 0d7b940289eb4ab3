"""Errors at the HTTP boundary: every one is JSON, ``{"error": {"code", "message",
"field"?}}``, with the status its kind deserves. The package's own errors are
translated here, so a route raises what the stores raise."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import (
    ArchiveUnavailable,
    DeliveryConflict,
    EndpointDisabled,
    EnqueueFailed,
    InvalidInput,
    NotFound,
    TenantExists,
    WebhooksError,
)
from ..storage.connection import UNAVAILABLE

__all__ = ["ApiError", "BodyTooLarge", "error_response", "install", "too_large"]


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
    if isinstance(exc, TenantExists | DeliveryConflict):
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
        codes = {404: "not_found", 405: "method_not_allowed"}
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
