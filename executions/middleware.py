"""Request middleware: gives every request a correlation id and echoes it on the response."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import Token

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from executions.logging import _correlation_id, accept_or_new

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
        return response
