"""Pure-ASGI middleware: request id + per-route metrics, and the request body size limit.

Pure ASGI (not BaseHTTPMiddleware) so `receive` reaches the routes untouched: they watch it for client
disconnects while their texts wait in the batcher.
"""

from __future__ import annotations

import re
import time
import uuid

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_body
from service.metrics import Metrics

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    """Gives every request an id (the client's X-Request-ID when well-formed), echoes it in the response, and
    records flipmatch_requests_total / flipmatch_request_duration_seconds by route template, never raw path."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _CLIENT_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"  # 404s share one label
            method = scope.get("method", "GET")
            self.metrics.requests.labels(template, method, str(status)).inc()
            self.metrics.request_duration.labels(template, method).observe(time.perf_counter() - started)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than {limit} bytes (FLIPMATCH_LIMITS__MAX_BODY_BYTES); "
                              "split it into several requests")


class BodyLimitMiddleware:
    """413 before reading when Content-Length is over the limit; while streaming when a chunked body grows
    past it (the route's body read raises BodyTooLarge, an HTTPException FastAPI lets through)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        exc = BodyTooLarge(self.limit)
        response = JSONResponse(error_body(str(exc.detail), "invalid_request_error", "body_too_large"), 413)
        await response(scope, receive, send)
