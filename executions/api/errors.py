"""API errors as Tako VM answers them: `{"detail": ..., "correlation_id": ...}` and a status.

ApiError is the API's own (malformed JSON, credentials, a missing job); the services' refusals
(executions.errors) are answered through STATUSES, the one table of their status codes; a request
that fails its schema (api/schemas.py) is a 422 naming every field, as Tako VM (FastAPI) does.
`install()` makes these the NinjaAPI's exception handlers.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI
from ninja.errors import HttpError, ValidationError
from pydantic_core import PydanticCustomError

from executions.correlation import current_correlation_id
from executions.errors import (
    DATABASE_RETRY_AFTER,
    DATABASE_UNAVAILABLE,
    AlreadyRequeued,
    ApplicationError,
    Conflict,
    FieldErrors,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    database_unavailable,
)

__all__ = ["ApiError", "ServiceUnavailable", "application_error_response", "error", "install", "invalid", "malformed"]

logger = logging.getLogger(__name__)

# How a schema's rule refuses a value (api/schemas.py): a 422 naming the field, or for a malformed
# query parameter, a 400.
INVALID = "tako_invalid"
MALFORMED = "tako_malformed"


def invalid(*messages: str) -> PydanticCustomError:
    return PydanticCustomError(INVALID, "{message}", {"message": messages[0], "messages": list(messages)})


def malformed(message: str) -> PydanticCustomError:
    return PydanticCustomError(MALFORMED, "{message}", {"message": message, "messages": [message]})


STATUSES: tuple[tuple[type[ApplicationError], int], ...] = (
    (InvalidRequest, 422),
    (NotFound, 404),
    (Conflict, 409),
    (TooManyRequests, 429),
    (ServiceUnavailable, 503),
)


class ApiError(Exception):
    """Raised anywhere in a view to answer with `{"detail": ..., "correlation_id": ...}`."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra


def error(status: int, detail: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"detail": detail, "correlation_id": current_correlation_id(), **extra}, status=status)


def application_error_response(exc: ApplicationError) -> JsonResponse:
    status = next((code for kind, code in STATUSES if isinstance(exc, kind)), 500)
    response = error(status, exc.message, **_extra_fields(exc))
    if isinstance(exc, TooManyRequests | ServiceUnavailable):
        response["Retry-After"] = str(exc.retry_after)
    return response


def _extra_fields(exc: ApplicationError) -> dict[str, Any]:
    """What Tako VM's bodies add to `detail` for some errors."""
    if isinstance(exc, InvalidRequest):
        return {"errors": exc.errors}
    if isinstance(exc, IdempotencyConflict):
        return {"error": exc.message, "existing_job_id": str(exc.existing.pk)}
    if isinstance(exc, AlreadyRequeued):
        return {"existing_job_id": str(exc.entry.requeued_execution_id)}
    if isinstance(exc, ServiceUnavailable):
        return {"error_type": exc.error_type}
    return {}


def api_error_response(exc: ApiError) -> JsonResponse:
    response = error(exc.status, exc.detail, **exc.extra)
    if exc.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="tako"'
    return response


# -- a request that fails its schema -----------------------------------------------------------------
def schema_error_response(exc: ValidationError) -> JsonResponse:
    """Ninja's list of pydantic errors as Tako's 422, every field with its sentences; a malformed
    query parameter (GET /jobs/{id}/result's wait or timeout) is a 400, as Tako VM answers it."""
    errors = FieldErrors()
    for item in exc.errors:
        field = _field(item["loc"])
        messages = _messages(item, field)
        if item["type"] == MALFORMED:
            return error(400, messages[0])
        for message in messages:
            errors.add(field, message)
    return application_error_response(InvalidRequest(dict(errors)))


def _field(loc: tuple[Any, ...]) -> str:
    """("body", "payload", "code") → "code"; ("query", "limit") → "limit"; the whole body → "body"."""
    source, *rest = loc
    if source == "body":
        rest = rest[1:]  # the view's parameter holding the body
    return ".".join(str(part) for part in rest) or "body"


def _messages(item: dict[str, Any], field: str) -> list[str]:
    kind = item["type"]
    if kind in (INVALID, MALFORMED):
        return list(item["ctx"]["messages"])
    if field == "body":
        return ["Request body must be a JSON object"]
    if kind == "extra_forbidden":
        return [f"Unknown field '{field}'"]
    if kind == "missing":
        return [f"{field[:1].upper()}{field[1:]} is required"]
    return [f"{field}: {item['msg']}"]  # pydantic's own sentence, for a rule without one of ours


# -- the handler -----------------------------------------------------------------------------------------
def install(api: NinjaAPI) -> None:
    """Make `respond` the API's only exception handler (in place of ninja's defaults)."""
    api.add_exception_handler(Exception, respond)


def respond(request: HttpRequest, exc: Any) -> HttpResponse:
    """Whatever an operation (or its auth, or reading its parameters) raised, in Tako's format:
    never an HTML page, never a traceback."""
    if isinstance(exc, ApiError):
        return api_error_response(exc)
    if isinstance(exc, ApplicationError):
        return application_error_response(exc)
    if isinstance(exc, ValidationError):
        return schema_error_response(exc)
    if isinstance(exc, RequestDataTooBig):  # a chunked body with no declared length
        return error(413, f"Request body too large (at most {settings.TAKO_MAX_REQUEST_BYTES} bytes)")
    if isinstance(exc, Http404):
        return error(404, "Not found")
    if isinstance(exc, HttpError):
        return error(exc.status_code, str(exc))
    if database_unavailable(exc):
        logger.warning("%s %s: the database is unavailable (%s)", request.method, request.path, exc)
        response = error(503, DATABASE_UNAVAILABLE)
        response["Retry-After"] = str(DATABASE_RETRY_AFTER)
        return response
    logger.exception("Unhandled error in %s %s", request.method, request.path, exc_info=exc)
    return error(500, "Internal error")
