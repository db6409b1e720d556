"""The one table from exception type to HTTP status, and the handlers that render OpenAI-style error bodies:
{"error": {"message", "type", "code"}}. Unexpected errors become a 500 with a request id; the traceback goes to
the log only."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.errors import (
    ArtifactError,
    ClientDisconnected,
    ConfigError,
    Conflict,
    EncoderFailed,
    FlipMatchError,
    Forbidden,
    InvalidInput,
    NotFound,
    NotReady,
    Overloaded,
    StoreUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)

logger = logging.getLogger(__name__)

# exception type -> (HTTP status, OpenAI-style error type). Subclasses match their nearest listed base.
ERROR_TABLE: dict[type[FlipMatchError], tuple[int, str]] = {
    UnsupportedMediaType: (415, "invalid_request_error"),
    InvalidInput: (422, "invalid_request_error"),
    NotFound: (404, "not_found_error"),
    Conflict: (409, "conflict_error"),
    Unauthorized: (401, "authentication_error"),
    Forbidden: (403, "permission_error"),
    Overloaded: (429, "rate_limit_error"),
    NotReady: (503, "service_unavailable_error"),
    StoreUnavailable: (503, "service_unavailable_error"),  # the shared database is away: retry the write
    # nginx's 499: counted as a client-side outcome, not a server error that would page someone.
    ClientDisconnected: (499, "client_closed_request"),
    EncoderFailed: (500, "server_error"),
    ArtifactError: (500, "server_error"),
    ConfigError: (500, "server_error"),
}
_HTTP_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
               415: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error"}


def status_for(exc: FlipMatchError) -> tuple[int, str]:
    for cls in type(exc).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]  # type: ignore[index]
    return 500, "server_error"


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


def error_body(message: str, type_: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code}}


async def _flipmatch_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FlipMatchError)
    status, type_ = status_for(exc)
    headers = {}
    if isinstance(exc, Overloaded | NotReady):
        headers["Retry-After"] = str(exc.retry_after_s)
    message = exc.message
    if status >= 500:
        logger.error("request failed request_id=%s code=%s: %s", request_id(request), exc.code, exc.message)
        message = f"{exc.message} (request id {request_id(request)})"
    return JSONResponse(error_body(message, type_, exc.code), status_code=status, headers=headers)


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors()[:5]:
        if err.get("type") == "json_invalid":
            position = err.get("loc", ("body", "?"))[-1]
            problems.append(f"the body is not valid JSON ({err.get('ctx', {}).get('error', 'decode error')} at "
                            f"character {position})")
            continue
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{_location(tuple(err.get('loc', ())))}: {message}")
    more = len(exc.errors()) - len(problems)
    text = "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")
    return JSONResponse(error_body(text, "invalid_request_error", "invalid_request"), status_code=422)


def allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI document lists for this request's path. Starlette's own 405 names only the first
    route that matched the path, and FastAPI makes one route per operation."""
    path = request.scope["path"]
    for template, operations in request.app.openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), path):
            return sorted(method.upper() for method in operations)
    return []


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "route_not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status_code)
    headers = dict(exc.headers or {})
    message = str(exc.detail)
    if exc.status_code == 405 and (allowed := allowed_methods(request)):
        headers["Allow"] = ", ".join(allowed)
        message = f"{request.method} is not allowed here; this path serves {', '.join(allowed)}"
    return JSONResponse(error_body(message, _HTTP_TYPES.get(exc.status_code, "server_error"), code),
                        status_code=exc.status_code, headers=headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    rid = request_id(request)
    logger.error("unhandled error request_id=%s", rid, exc_info=exc)
    return JSONResponse(
        error_body(f"internal error; quote request id {rid} when reporting it", "server_error", "internal_error"),
        status_code=500,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FlipMatchError, _flipmatch_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
