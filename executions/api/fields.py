"""The API's field types: each declares its bounds once, read from settings at startup, for the
OpenAPI document and for the sentence that refuses a value (`invalid`: a 422 naming the field;
`malformed`: a 400). api/schemas.py builds the request and response models from them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from django.conf import settings
from pydantic import BeforeValidator, Field, WithJsonSchema

from executions.api.errors import invalid, malformed
from executions.errors import FieldErrors
from executions.models import JOB_TYPE_REF_RE, MAX_REQUIREMENTS, Execution, requirement_errors
from executions.sandbox.classify import ERROR_TYPES
from executions.services.dlq import DEAD_LETTER_TYPES
from executions.services.job_requests import (
    IDEMPOTENCY_KEY_RE,
    INPUT_PATH_RE,
    JOB_TYPE_MESSAGE,
    MAX_BATCH_INPUTS,
    input_files_parse,
)
from executions.services.webhooks import MAX_URL_CHARS, webhook_url_problem

JOB_TYPE_PATTERN = re.compile(JOB_TYPE_REF_RE)


# -- request bodies ------------------------------------------------------------------------------
def _whole_seconds(label: str, low: int, high: int) -> BeforeValidator:
    """A whole number of seconds in [low, high] (5 and 5.0; never true or "5"), else Tako's sentence."""
    message = f"{label} must be between {low} and {high} seconds"

    def check(value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if type(value) is not int or not low <= value <= high:
            raise invalid(message)
        return value

    return BeforeValidator(check)


def _code(value: Any) -> str:
    if not isinstance(value, str):
        raise invalid("Code must be a string")
    if not value.strip():
        raise invalid("Code cannot be empty")
    if len(value) > settings.TAKO_MAX_CODE_CHARS:
        raise invalid(f"Code exceeds size limit ({settings.TAKO_MAX_CODE_CHARS} characters)")
    return value


def _input_data(value: Any) -> Any:
    if value is not None and not isinstance(value, dict):
        raise invalid("input_data must be a JSON object")
    return value


def _inputs(value: Any) -> Any:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_BATCH_INPUTS:
        raise invalid(f"inputs must be a list of 1 to {MAX_BATCH_INPUTS} JSON objects")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise invalid(f"inputs[{index}] must be a JSON object")
    return value


def _job_type(value: Any) -> Any:
    if not isinstance(value, str) or not JOB_TYPE_PATTERN.match(value):
        raise invalid(JOB_TYPE_MESSAGE)
    return value


def _requirements(value: Any) -> Any:
    problems = requirement_errors(value)
    if problems:
        raise invalid(*problems)
    return value


def _idempotency_key(value: Any) -> Any:
    if not isinstance(value, str) or not IDEMPOTENCY_KEY_RE.match(value):
        raise invalid("idempotency_key must be 8-255 characters of letters, digits, - and _")
    return value


def _webhook_url(value: Any) -> Any:
    problem = webhook_url_problem(value)
    if problem:
        raise invalid(problem)
    return value


def _files(value: Any) -> Any:
    """Checked and decoded by the one rule admission uses too (job_requests.input_files_parse)."""
    errors = FieldErrors()
    files = input_files_parse(value, errors)
    if errors:
        raise invalid(*errors["files"])
    return {file.path: file.data for file in files}


Code = Annotated[
    str,
    Field(min_length=1, max_length=settings.TAKO_MAX_CODE_CHARS, description="Python source, not blank"),
    BeforeValidator(_code),
]
MAX_TIMEOUT, MAX_STARTUP_TIMEOUT = settings.TAKO_MAX_TIMEOUT, settings.TAKO_MAX_STARTUP_TIMEOUT
Timeout = Annotated[int, Field(ge=1, le=MAX_TIMEOUT), _whole_seconds("Timeout", 1, MAX_TIMEOUT)]
StartupTimeout = Annotated[
    int, Field(ge=10, le=MAX_STARTUP_TIMEOUT), _whole_seconds("startup_timeout", 10, MAX_STARTUP_TIMEOUT)
]
JobTypeName = Annotated[
    str,
    Field(
        pattern=JOB_TYPE_REF_RE,
        description="A job type's name; `name@<version tag>` or `name@sha256:<digest>` runs on that build of it",
    ),
    BeforeValidator(_job_type),
]
InputData = Annotated[
    dict[str, Any] | None,
    Field(
        description=f"A JSON object, at most {settings.TAKO_MAX_INPUT_BYTES} bytes serialized; "
        "the program reads it from /input/data.json"
    ),
    BeforeValidator(_input_data),
]
Inputs = Annotated[
    list[dict[str, Any]],
    Field(
        min_length=1,
        max_length=MAX_BATCH_INPUTS,
        description="One job per input: each a JSON object, that job's input_data (at most "
        f"{settings.TAKO_MAX_INPUT_BYTES} bytes serialized)",
    ),
    BeforeValidator(_inputs),
]
Requirements = Annotated[
    list[str],
    Field(max_length=MAX_REQUIREMENTS, description="pip specifiers installed for this run only"),
    BeforeValidator(_requirements),
]
IdempotencyKey = Annotated[
    str,
    Field(
        pattern=IDEMPOTENCY_KEY_RE.pattern,
        description="The caller's own key: a retry with the same payload gets the first job (sync: its result) "
        "and runs nothing; another payload is a 409",
    ),
    BeforeValidator(_idempotency_key),
]
WebhookUrl = Annotated[
    str,
    Field(
        max_length=MAX_URL_CHARS,
        json_schema_extra={"format": "uri"},
        description="http(s) URL POSTed the execution record when the job ends, signed "
        "(X-Tako-Signature: sha256=<HMAC-SHA256 of the body>); retried with backoff; no loopback, "
        "private, link-local or metadata addresses (checked after DNS, at send time)",
    ),
    BeforeValidator(_webhook_url),
]
Files = Annotated[
    dict[str, bytes],
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": INPUT_PATH_RE.pattern},
            "additionalProperties": {"type": "string", "format": "byte"},
            "maxProperties": settings.TAKO_MAX_INPUT_FILES,
            "description": f"{{path: base64 content}}: each written read-only at /input/<path>; at most "
            f"{settings.TAKO_MAX_INPUT_FILES} files, {settings.TAKO_MAX_INPUT_FILE_BYTES} bytes each, "
            f"{settings.TAKO_MAX_INPUT_FILES_BYTES} in all; not data.json. Or send the request as "
            "multipart/form-data: a 'request' part with this JSON body and one part per file, its filename the path",
        }
    ),
    BeforeValidator(_files),
]
ErrorType = Literal[ERROR_TYPES]  # type: ignore[valid-type]
DEAD_LETTER_TYPE_NAMES = tuple(sorted(DEAD_LETTER_TYPES))
DeadLetterType = Literal[DEAD_LETTER_TYPE_NAMES]  # type: ignore[valid-type]
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
Uuid = Annotated[str, WithJsonSchema({"type": "string", "format": "uuid"})]


# -- query strings ---------------------------------------------------------------------------------
def _query_int(name: str, low: int, high: int, default: int) -> BeforeValidator:
    def check(value: Any) -> int:
        if value in (None, ""):
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise invalid(f"{name} must be an integer") from None
        if not low <= number <= high:
            raise invalid(f"{name} must be between {low} and {high}")
        return number

    return BeforeValidator(check)


def _one_of(name: str, values: tuple[str, ...], message: str | None = None) -> Callable[[Any], Any]:
    """An optional choice; an empty value means none."""

    def check(value: Any) -> Any:
        if value in (None, ""):
            return None
        if value not in values:
            raise invalid(message or f"{name} must be one of {', '.join(values)}")
        return value

    return check


def _wait(value: Any) -> bool:
    text = str(value or "false").lower()
    if text not in ("true", "false", "1", "0"):
        raise malformed("wait must be true or false")
    return text in ("true", "1")


def _wait_timeout(value: Any) -> float:
    message = "timeout must be a number of seconds between 1 and 300"
    try:
        seconds = float(value or 30)
    except (TypeError, ValueError):
        raise malformed(message) from None
    if not 1 <= seconds <= 300:
        raise malformed(message)
    return seconds


MAX_OFFSET = 10**9  # far past any real list, and inside every database's integer range
View = Annotated[
    Literal["full", "slim"] | None,
    Field(description="full adds artifacts, resource usage, hashes and lineage"),
    BeforeValidator(_one_of("view", ("full", "slim"), "view must be 'full' or 'slim'")),
]
Limit = Annotated[int, Field(ge=1, le=1000), _query_int("limit", 1, 1000, 100)]
Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET), _query_int("offset", 0, MAX_OFFSET, 0)]
StatusFilter = Annotated[Execution.Status | None, BeforeValidator(_one_of("status", tuple(Execution.Status.values)))]
DeadLetterTypeFilter = Annotated[DeadLetterType | None, BeforeValidator(_one_of("error_type", DEAD_LETTER_TYPE_NAMES))]
Wait = Annotated[bool, Field(description="Block until the job ends"), BeforeValidator(_wait)]
WaitSeconds = Annotated[
    float, Field(ge=1, le=300, description="How long wait=true waits, in seconds"), BeforeValidator(_wait_timeout)
]
