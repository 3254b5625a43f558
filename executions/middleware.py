"""Request middleware: gives every request a correlation id and echoes it on the response."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from contextvars import Token
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from csp.middleware import CSPMiddleware
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase

from executions.correlation import _correlation_id, accept_or_new

HEADER = "X-Correlation-ID"


class CorrelationIdMiddleware:
    """Works in both modes, so async views (POST /execute) stay off Django's sync thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        token = self._begin(request)
        try:
            return self._finish(request, self.get_response(request))
        finally:
            _correlation_id.reset(token)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        token = self._begin(request)
        try:
            return self._finish(request, await self.get_response(request))
        finally:
            _correlation_id.reset(token)

    @staticmethod
    def _begin(request: HttpRequest) -> Token[str]:
        request.correlation_id = accept_or_new(request.headers.get(HEADER))  # type: ignore[attr-defined]
        return _correlation_id.set(request.correlation_id)  # type: ignore[attr-defined]

    @staticmethod
    def _finish(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        response[HEADER] = request.correlation_id  # type: ignore[attr-defined]
        # Where the caller stands against its rate limit, when the request was counted (the API's
        # auth counts it: api/auth.py), as the IETF RateLimit header fields name it.
        state = getattr(request, "rate_state", None)
        if state is not None:
            response["RateLimit-Limit"] = str(state.limit)
            response["RateLimit-Remaining"] = str(state.remaining)
            response["RateLimit-Reset"] = str(state.reset)
        return response


class RequestLimits:
    """ASGI wrapper: refuses absurd requests before their body is read.

    A body declared larger than TAKO_MAX_REQUEST_BYTES gets 413 and headers over
    TAKO_MAX_HEADER_BYTES get 431, both as the API's JSON error, without reading the body.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = scope.get("headers", [])
            header_bytes = sum(len(name) + len(value) for name, value in headers)
            declared = next((value for name, value in headers if name == b"content-length"), b"0")
            if header_bytes > settings.TAKO_MAX_HEADER_BYTES:
                await _refuse(send, 431, "Request headers too large")
                return
            if declared.isdigit() and int(declared) > settings.TAKO_MAX_REQUEST_BYTES:
                await _refuse(send, 413, f"Request body too large (at most {settings.TAKO_MAX_REQUEST_BYTES} bytes)")
                return
        await self.app(scope, receive, send)


async def _refuse(send: Any, status: int, detail: str) -> None:
    correlation_id = str(uuid.uuid4())
    body = json.dumps({"detail": detail, "correlation_id": correlation_id}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-correlation-id", correlation_id.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware (CONTENT_SECURITY_POLICY in settings), also in async mode without
    the two thread hops Django's MiddlewareMixin would add: building the header is pure
    computation, so it runs inline either way."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        super().__init__(get_response)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        self.process_request(request)
        response: Any = self.get_response(request)
        return self.process_response(request, response)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        self.process_request(request)
        response: Any = await self.get_response(request)  # type: ignore[misc]
        return self.process_response(request, response)
