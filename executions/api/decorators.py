"""Plumbing shared by every JSON API view: errors as JSON, method checks, body parsing."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from executions.logging import current_correlation_id

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """Raised anywhere in a view to answer with `{"detail": ..., "correlation_id": ...}`."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra


class InvalidRequest(ApiError):
    """422: the body or query failed validation; `errors` maps each field to its messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        first = next(iter(errors.values()))[0]
        super().__init__(422, first, errors=errors)


class ServiceUnavailable(ApiError):
    """503 with Retry-After: Docker is down or the circuit is open; try again later."""

    def __init__(self, detail: str, retry_after: int = 30) -> None:
        super().__init__(503, detail, error_type="service_unavailable")
        self.retry_after = retry_after


def error(status: int, detail: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"detail": detail, "correlation_id": current_correlation_id(), **extra}, status=status)


def parse_json_body(request: HttpRequest, *, allow_empty: bool = False) -> Any:
    """The request's JSON body; with `allow_empty`, no body at all reads as {}."""
    if allow_empty and not request.body.strip():
        return {}
    content_type = request.content_type or ""
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiError(415, f"Content-Type must be application/json, not {content_type}")
    try:
        return json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Malformed JSON body: {exc}") from None


def api_view(*methods: str) -> Callable[[Callable], Callable]:
    """Mark a function view as a JSON API endpoint answering `methods` (sync or async view).

    Wrong method → 405 JSON; ApiError → its JSON error; any other exception → 500 JSON with no
    traceback (logged with the correlation id). HEAD is answered wherever GET is.
    """
    allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())

    def decorate(view: Callable) -> Callable:
        def reject_method(request: HttpRequest) -> HttpResponse | None:
            if request.method in allowed:
                return None
            response = error(405, f"Method {request.method} not allowed; use {', '.join(sorted(methods))}")
            response["Allow"] = ", ".join(sorted(allowed))
            return response

        def on_error(exc: Exception, request: HttpRequest) -> HttpResponse:
            if isinstance(exc, ApiError):
                response = error(exc.status, exc.detail, **exc.extra)
                if isinstance(exc, ServiceUnavailable):
                    response["Retry-After"] = str(exc.retry_after)
                return response
            logger.exception("Unhandled error in %s %s", request.method, request.path)
            return error(500, "Internal error")

        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
                rejected = reject_method(request)
                if rejected is not None:
                    return rejected
                try:
                    return await view(request, *args, **kwargs)
                except Exception as exc:
                    return on_error(exc, request)

            return csrf_exempt(async_wrapper)

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            rejected = reject_method(request)
            if rejected is not None:
                return rejected
            try:
                return view(request, *args, **kwargs)
            except Exception as exc:
                return on_error(exc, request)

        return csrf_exempt(wrapper)

    return decorate
