"""Correlation ids: one per request (or job), on every log line written while it is handled."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

_correlation_id: ContextVar[str] = ContextVar("correlation_id", default="-")
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def accept_or_new(candidate: str | None) -> str:
    """The client's id if it is 1-128 chars of [A-Za-z0-9._:-], else a new UUID4."""
    if candidate and _VALID.match(candidate):
        return candidate
    return str(uuid.uuid4())


def current_correlation_id() -> str:
    return _correlation_id.get()


@contextmanager
def correlation_context(correlation_id: str) -> Iterator[None]:
    token = _correlation_id.set(correlation_id or "-")
    try:
        yield
    finally:
        _correlation_id.reset(token)


class CorrelationIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = _correlation_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (TAKO_LOG_FORMAT=json), for a log shipper."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "correlation_id": getattr(record, "correlation_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
