"""What the service refuses, and why: one hierarchy raised by services, whoever called them.

Each error's message is one readable sentence, fit for an API body and a page alike. The API maps
them to status codes in one table (executions/api/errors.py); the pages show the message.
"""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """A request the service refuses; `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(ApplicationError):
    """The request breaks a rule; `errors` maps each field to its messages (the first is the message)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(next(iter(errors.values()))[0])
        self.errors = errors


class FieldErrors(dict[str, list[str]]):
    """Collects every broken rule of a request, so the caller learns them all at once."""

    def add(self, name: str, message: str) -> None:
        self.setdefault(name, []).append(message)

    def raise_if_any(self) -> None:
        if self:
            raise InvalidRequest(dict(self))


class NotFound(ApplicationError):
    pass


class Conflict(ApplicationError):
    """The request contradicts the state of what it names."""


class IdempotencyConflict(Conflict):
    def __init__(self, existing: Any) -> None:
        super().__init__("Idempotency key reused with a different payload")
        self.existing = existing


class AlreadyEnded(Conflict):
    def __init__(self, execution: Any) -> None:
        super().__init__(f"Job already ended ({execution.status}); nothing to cancel")
        self.execution = execution


class AlreadyRequeued(Conflict):
    def __init__(self, entry: Any) -> None:
        super().__init__(f"DLQ entry {entry.pk} was already requeued as job {entry.requeued_execution_id}")
        self.entry = entry


class BuildInProgress(Conflict):
    """Another build of the same environment is running."""


class TooManyRequests(ApplicationError):
    """The caller is over one of its limits; it may try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(TooManyRequests):
    """Too many requests a minute; `state` says where the caller stands (the RateLimit-* headers)."""

    def __init__(self, message: str, retry_after: int, *, state: Any = None) -> None:
        super().__init__(message, retry_after)
        self.state = state


class QuotaExceeded(TooManyRequests):
    """Too many of the caller's jobs are queued or running."""


class ServiceUnavailable(ApplicationError):
    """The service cannot take the job now (Tako's `service_unavailable`); retry after `retry_after` s."""

    error_type = "service_unavailable"
    retry_after = 30

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        if retry_after is not None:
            self.retry_after = retry_after


class QueueFull(ServiceUnavailable):
    """TAKO_MAX_QUEUE_SIZE jobs are already waiting."""

    retry_after = 5


class EngineUnavailable(ServiceUnavailable):
    """Docker cannot be used: every engine's circuit breaker is open, or the engine is unreachable."""


DATABASE_RETRY_AFTER = 5  # seconds: a database restart, a failover
DATABASE_UNAVAILABLE = "The database is unavailable; nothing was changed. Try again in a few seconds."


def database_unavailable(exc: BaseException | None) -> bool:
    """Is this the database being away (refused, dropped, timed out), rather than a bug of ours?
    Pages and the API answer it with 503 and Retry-After, never 500."""
    from django.db import InterfaceError, OperationalError

    return isinstance(exc, OperationalError | InterfaceError)
