"""Validation of API input. Each rule says exactly what is wrong (docs/API.md's messages)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.http import QueryDict

from executions.api.errors import ApiError, InvalidRequest
from executions.models import JOB_TYPE_NAME_RE, Environment, Execution, requirement_errors

EXECUTE_FIELDS = (
    "code",
    "input_data",
    "timeout",
    "job_type",
    "startup_timeout",
    "requirements",
    "idempotency_key",
)
IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{8,255}$")


class _Errors(dict[str, list[str]]):
    def add(self, name: str, message: str) -> None:
        self.setdefault(name, []).append(message)

    def raise_if_any(self) -> None:
        if self:
            raise InvalidRequest(dict(self))


def _integer(value: Any) -> int | None:
    """JSON numbers that are whole (5 or 5.0), never booleans or strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


@dataclass
class ExecuteRequest:
    code: str
    environment: Environment
    input_data: dict[str, Any] = field(default_factory=dict)
    timeout: int | None = None
    startup_timeout: int | None = None
    requirements: list[str] = field(default_factory=list)
    idempotency_key: str | None = None

    def execution_fields(self) -> dict[str, Any]:
        """The request as execution_create and execution_submit take it."""
        return {
            "code": self.code,
            "environment": self.environment,
            "input_data": self.input_data,
            "timeout": self.timeout,
            "startup_timeout": self.startup_timeout,
            "requirements": self.requirements,
            "idempotency_key": self.idempotency_key,
        }


def parse_execute_request(body: Any) -> ExecuteRequest:
    """Validate the body of POST /execute and /execute/async; raises InvalidRequest (422)."""
    if not isinstance(body, dict):
        raise InvalidRequest({"body": ["Request body must be a JSON object"]})
    errors = _Errors()
    for name in body:
        if name not in EXECUTE_FIELDS:
            errors.add(name, f"Unknown field '{name}'")

    code = body.get("code")
    if "code" not in body:
        errors.add("code", "Code is required")
    elif not isinstance(code, str):
        errors.add("code", "Code must be a string")
    elif not code.strip():
        errors.add("code", "Code cannot be empty")
    elif len(code) > settings.TAKO_MAX_CODE_CHARS:
        errors.add("code", f"Code exceeds size limit ({settings.TAKO_MAX_CODE_CHARS} characters)")

    input_data = body.get("input_data")
    if input_data is None:
        input_data = {}
    elif not isinstance(input_data, dict):
        errors.add("input_data", "input_data must be a JSON object")
    elif len(json.dumps(input_data).encode()) > settings.TAKO_MAX_INPUT_BYTES:
        errors.add("input_data", "input_data exceeds size limit (1 MB serialized)")

    timeout = _bounded_int(body, "timeout", 1, settings.TAKO_MAX_TIMEOUT, "Timeout", errors)
    startup_timeout = _bounded_int(body, "startup_timeout", 10, 600, "startup_timeout", errors)
    requirements = _requirements(body.get("requirements"), errors)

    key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not IDEMPOTENCY_KEY_RE.match(key)):
        errors.add("idempotency_key", "idempotency_key must be 8-255 characters of letters, digits, - and _")

    environment = _environment(body.get("job_type"), errors)
    errors.raise_if_any()
    assert environment is not None and isinstance(code, str)
    return ExecuteRequest(
        code=code,
        environment=environment,
        input_data=input_data,
        timeout=timeout,
        startup_timeout=startup_timeout,
        requirements=requirements,
        idempotency_key=key,
    )


def _bounded_int(body: dict[str, Any], name: str, low: int, high: int, label: str, errors: _Errors) -> int | None:
    if body.get(name) is None:
        return None
    value = _integer(body[name])
    if value is None or not low <= value <= high:
        errors.add(name, f"{label} must be between {low} and {high} seconds")
        return None
    return value


def _requirements(value: Any, errors: _Errors) -> list[str]:
    if value is None or value == []:
        return []
    if not settings.TAKO_ALLOW_REQUIREMENTS:
        errors.add("requirements", "Per-run requirements are turned off on this deployment")
        return []
    problems = requirement_errors(value)
    for problem in problems:
        errors.add("requirements", problem)
    return [] if problems else [item.strip() for item in value]


def _environment(value: Any, errors: _Errors) -> Environment | None:
    name = "default" if value is None else value
    if not isinstance(name, str) or not re.match(JOB_TYPE_NAME_RE, name):
        errors.add("job_type", "job_type must be a name of letters, digits, - and _")
        return None
    environment = Environment.objects.filter(name=name).first()
    if environment is None:
        available = ", ".join(Environment.objects.values_list("name", flat=True))
        errors.add("job_type", f"Unknown job_type '{name}'; available: {available}")
    return environment


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
    errors = _Errors()
    limit = _query_int(query, "limit", 100, 1, 1000, errors)
    offset = _query_int(query, "offset", 0, 0, MAX_OFFSET, errors)
    errors.raise_if_any()
    return Page(limit, offset)


def _query_int(query: QueryDict, name: str, default: int, low: int, high: int | None, errors: _Errors) -> int:
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


@dataclass
class DeriveRequest:
    code: str | None
    environment: Environment | None
    timeout: int | None


def parse_derive_request(body: Any, *, require_code: bool) -> DeriveRequest:
    """Body of rerun (`{job_type?, timeout?}`) and fork (`{code, job_type?, timeout?}`)."""
    if not isinstance(body, dict):
        raise InvalidRequest({"body": ["Request body must be a JSON object"]})
    errors = _Errors()
    allowed = ("code", "job_type", "timeout") if require_code else ("job_type", "timeout")
    for name in body:
        if name not in allowed:
            errors.add(name, f"Unknown field '{name}'")
    code = body.get("code")
    if require_code:
        if not isinstance(code, str) or not code.strip():
            errors.add("code", "Code cannot be empty" if isinstance(code, str) else "Code is required")
        elif len(code) > settings.TAKO_MAX_CODE_CHARS:
            errors.add("code", f"Code exceeds size limit ({settings.TAKO_MAX_CODE_CHARS} characters)")
    timeout = _bounded_int(body, "timeout", 1, settings.TAKO_MAX_TIMEOUT, "Timeout", errors)
    environment = _environment(body["job_type"], errors) if body.get("job_type") is not None else None
    errors.raise_if_any()
    return DeriveRequest(code=code if require_code else None, environment=environment, timeout=timeout)


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
