"""Plumbing shared by every JSON API view: errors as JSON, method checks, auth, body parsing."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from executions.api.auth import authenticate, authorize, csrf_check, rate_limit
from executions.api.errors import ApiError, application_error_response, error
from executions.errors import ApplicationError, InvalidRequest
from executions.services.submissions import Submitter

logger = logging.getLogger(__name__)


def client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def submitter(request: HttpRequest) -> Submitter:
    """Who submits a job from this request (api_view has already counted it for the rate limit)."""
    return Submitter(
        user=request.principal.user,  # type: ignore[attr-defined]
        client_ip=client_ip(request),
        correlation_id=request.correlation_id,  # type: ignore[attr-defined]
    )


def parse_json_body(request: HttpRequest, *, allow_empty: bool = False) -> Any:
    """The request's JSON body; with `allow_empty`, no body at all reads as {}."""
    if allow_empty and not request.body.strip():
        return {}
    content_type = request.content_type or ""
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiError(415, f"Content-Type must be application/json, not {content_type}")
    try:
        body = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Malformed JSON body: {exc}") from None
    field = _field_with_nul(body)
    if field is not None:
        # No database stores them in text (PostgreSQL refuses), and no Python source holds one.
        raise InvalidRequest({field or "body": ["Text must not contain NUL characters (\\u0000)"]})
    return body


def _field_with_nul(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) in `value` holding a NUL character, else None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        here = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and "\x00" in key:
            return here
        found = _field_with_nul(item, here)
        if found is not None:
            return found
    return None


def api_view(*methods: str, scope: str | None = "execute") -> Callable[[Callable], Callable]:
    """Mark a function view as a JSON API endpoint answering `methods` (sync or async view).

    The caller is authenticated and must hold `scope` (`execute` or `admin`; None: public), and
    is rate limited; the view finds it in `request.principal`. A caller authenticated by the
    session cookie must pass Django's CSRF check for unsafe methods (a key in a header need not).
    Wrong method → 405 JSON; ApiError or ApplicationError → its JSON error; any other exception →
    500 JSON with no traceback (logged with the correlation id). HEAD is answered wherever GET is.
    """
    allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())

    def decorate(view: Callable) -> Callable:
        def reject_method(request: HttpRequest) -> HttpResponse | None:
            if request.method in allowed:
                return None
            response = error(405, f"Method {request.method} not allowed; use {', '.join(sorted(methods))}")
            response["Allow"] = ", ".join(sorted(allowed))
            return response

        def admit(request: HttpRequest) -> None:
            if "\x00" in request.path:  # no job, artifact or key has such a name
                raise ApiError(404, "Not found")
            if "%00" in request.META.get("QUERY_STRING", ""):
                raise ApiError(400, "NUL characters (%00) are not allowed in the query string")
            if scope is None:
                return
            principal = authenticate(request)
            if principal.by_session:
                csrf_check(request)
            authorize(principal, scope)
            rate_limit(principal)
            request.principal = principal  # type: ignore[attr-defined]

        def on_error(exc: Exception, request: HttpRequest) -> HttpResponse:
            if isinstance(exc, RequestDataTooBig):  # a chunked body with no declared length
                exc = ApiError(413, f"Request body too large (at most {settings.TAKO_MAX_REQUEST_BYTES} bytes)")
            if isinstance(exc, ApplicationError):
                return application_error_response(exc)
            if isinstance(exc, ApiError):
                response = error(exc.status, exc.detail, **exc.extra)
                if exc.status == 401:
                    response["WWW-Authenticate"] = 'Bearer realm="tako"'
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
                    await sync_to_async(admit)(request)
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
                admit(request)
                return view(request, *args, **kwargs)
            except Exception as exc:
                return on_error(exc, request)

        return csrf_exempt(wrapper)

    return decorate
