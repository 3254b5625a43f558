"""API errors as Tako VM answers them: `{"detail": ..., "correlation_id": ...}` and a status.

ApiError is the API's own (malformed JSON, credentials, a missing job); the services' refusals
(executions.errors) are answered through STATUSES, the one table of their status codes.
"""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse

from executions.errors import (
    AlreadyRequeued,
    ApplicationError,
    Conflict,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
)
from executions.logging import current_correlation_id

__all__ = ["ApiError", "ServiceUnavailable", "application_error_response", "error"]  # (api/operations.py)

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
