"""Request middleware: gives every request a correlation id and echoes it on the response; serves
static files (WhiteNoise) without taking async requests off the event loop."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from contextvars import Token
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from csp.middleware import CSPMiddleware
from django.conf import settings
from django.contrib.auth import middleware as auth_middleware
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponseBase
from django.middleware import common
from whitenoise.middleware import WhiteNoiseMiddleware

from executions.correlation import _correlation_id, accept_or_new

HEADER = "X-Correlation-ID"


class EitherMode:
    """A middleware that runs in the mode of its chain: under ASGI, an async request stays on the
    event loop (Django adapts a sync-only middleware with a thread hop before it and one after).
    A subclass calls adopt_mode(get_response) and defines _call (sync) and _acall (async)."""

    sync_capable = True
    async_capable = True
    is_async = False

    def adopt_mode(self, get_response: Callable) -> None:
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        return self._acall(request) if self.is_async else self._call(request)

    def _call(self, request: HttpRequest) -> HttpResponseBase:
        raise NotImplementedError

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        raise NotImplementedError


class CorrelationIdMiddleware(EitherMode):
    """Works in both modes, so async views (POST /execute) stay off Django's sync thread."""

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.adopt_mode(get_response)

    def _call(self, request: HttpRequest) -> HttpResponseBase:
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


class HooksOnTheLoop:
    """For a MiddlewareMixin: in async mode its process_request and process_response run inline
    on the event loop, where Django's MiddlewareMixin sends each to a thread and back (two hops
    per middleware per request: with Django's stack, most of an API call's time outside the
    view). Only for hooks that compute and never block; a response hook that may write to the
    database says so (response_blocks), and then runs in a thread as before. (Django's security,
    clickjacking and CSRF middleware would qualify too, but its deploy checks find them only by
    their own paths.)"""

    get_response: Any
    process_request: Callable[[HttpRequest], Any]
    process_response: Callable[[HttpRequest, Any], Any]

    def response_blocks(self, request: HttpRequest) -> bool:
        return False

    async def __acall__(self, request: HttpRequest) -> Any:
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        if not hasattr(self, "process_response"):
            return response
        if self.response_blocks(request):
            return await sync_to_async(self.process_response, thread_sensitive=True)(request, response)
        return self.process_response(request, response)


class CommonMiddleware(HooksOnTheLoop, common.CommonMiddleware):
    pass


class AuthenticationMiddleware(HooksOnTheLoop, auth_middleware.AuthenticationMiddleware):
    """(request.user stays lazy: read in a view, it is read there.)"""


class SessionMiddleware(HooksOnTheLoop, sessions.SessionMiddleware):
    def response_blocks(self, request: HttpRequest) -> bool:
        session = getattr(request, "session", None)
        return session is None or session.modified or bool(settings.SESSION_SAVE_EVERY_REQUEST)  # saved: the database


class MessageMiddleware(HooksOnTheLoop, messages.MessageMiddleware):
    def response_blocks(self, request: HttpRequest) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is None or storage.used or storage.added_new  # stored: may load the session


class ContentSecurityPolicyMiddleware(HooksOnTheLoop, CSPMiddleware):
    """django-csp's middleware (CONTENT_SECURITY_POLICY in settings): building the header is pure
    computation."""


class StaticFilesMiddleware(EitherMode, WhiteNoiseMiddleware):
    """WhiteNoise in both modes. WhiteNoise's own middleware is sync only, so under ASGI every
    request (an API call too) crossed to a thread before it and back to the event loop after it;
    here an async request stays on the loop, and only a static file is served from a thread."""

    def __init__(self, get_response: Callable) -> None:
        WhiteNoiseMiddleware.__init__(self, get_response)
        self.adopt_mode(get_response)

    def _call(self, request: HttpRequest) -> HttpResponseBase:
        response: HttpResponseBase = WhiteNoiseMiddleware.__call__(self, request)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        if self.autorefresh:  # (development: it looks at the disk)
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        response: HttpResponseBase = await self.get_response(request)
        return response
