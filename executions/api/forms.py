"""Validation of the API's query strings, and its pages of lists. (Request bodies that create jobs
are validated where jobs are admitted: services/job_requests.py.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import QueryDict

from executions.api.errors import ApiError
from executions.errors import FieldErrors, InvalidRequest
from executions.models import Execution

MAX_OFFSET = 10**9  # far past any real list, and inside every database's integer range


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


def paginated(rows: Any, page: Page, serialize: Any) -> dict[str, Any]:
    """One page of a queryset as the API lists it: items, limit, offset, has_more, count."""
    fetched = list(rows[page.offset : page.offset + page.limit + 1])  # one extra tells has_more
    items = [serialize(row) for row in fetched[: page.limit]]
    return {
        "items": items,
        "limit": page.limit,
        "offset": page.offset,
        "has_more": len(fetched) > page.limit,
        "count": len(items),
    }


def parse_page(query: QueryDict) -> Page:
    errors = FieldErrors()
    limit = _query_int(query, "limit", 100, 1, 1000, errors)
    offset = _query_int(query, "offset", 0, 0, MAX_OFFSET, errors)
    errors.raise_if_any()
    return Page(limit, offset)


def _query_int(query: QueryDict, name: str, default: int, low: int, high: int | None, errors: FieldErrors) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        errors.add(name, f"{name} must be an integer")
        return default
    if value < low or (high is not None and value > high):
        errors.add(name, f"{name} must be between {low} and {high}" if high else f"{name} must be at least {low}")
    return value


def parse_view(query: QueryDict) -> bool:
    """True for view=full; view=slim or nothing is the default record."""
    view = query.get("view")
    if view not in (None, "", "full", "slim"):
        raise InvalidRequest({"view": ["view must be 'full' or 'slim'"]})
    return view == "full"


def parse_status(query: QueryDict) -> str | None:
    status = query.get("status") or None
    if status is not None and status not in Execution.Status.values:
        raise InvalidRequest({"status": [f"status must be one of {', '.join(Execution.Status.values)}"]})
    return status


def parse_wait(query: QueryDict) -> tuple[bool, float]:
    """`wait` (true/false) and `timeout` (1-300 s, default 30) of GET /jobs/{id}/result; 400 if bad."""
    wait = (query.get("wait") or "false").lower()
    if wait not in ("true", "false", "1", "0"):
        raise ApiError(400, "wait must be true or false")
    raw = query.get("timeout") or "30"
    try:
        timeout = float(raw)
    except ValueError:
        raise ApiError(400, "timeout must be a number of seconds between 1 and 300") from None
    if not 1 <= timeout <= 300:
        raise ApiError(400, "timeout must be a number of seconds between 1 and 300")
    return wait in ("true", "1"), timeout
