"""API errors: raise one anywhere in a view to answer `{"detail": ..., "correlation_id": ...}`."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse

from executions.logging import current_correlation_id


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


class RateLimited(ApiError):
    """429 with Retry-After: too many requests, or too many jobs in progress."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(429, detail)
        self.retry_after = retry_after


def error(status: int, detail: str, **extra: Any) -> JsonResponse:
    return JsonResponse({"detail": detail, "correlation_id": current_correlation_id(), **extra}, status=status)
