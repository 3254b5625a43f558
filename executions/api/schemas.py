"""Every shape the JSON API reads or writes, once (docs/API.md): request validation, response
serialization, /openapi.json and /docs all come from these models.

Bounds are read from settings when this module is imported (at startup). A request field that
breaks a rule is refused with Tako's one readable sentence, raised here (`invalid`) and answered
by api/errors.py as `{"detail": ..., "errors": {field: [messages]}}`. What needs the database
(does the job type exist?) or is not a shape (is input_data under 1 MB?) stays with admission
(services/job_requests.py), which every entry point shares.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from django.conf import settings
from ninja import Schema
from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema

from executions.api.errors import invalid, malformed
from executions.models import (
    JOB_TYPE_NAME_RE,
    MAX_REQUIREMENTS,
    CircuitBreaker,
    Environment,
    Execution,
    ProcessBeat,
    requirement_errors,
)
from executions.sandbox.classify import ERROR_TYPES
from executions.services.dlq import DEAD_LETTER_TYPES
from executions.services.job_requests import IDEMPOTENCY_KEY_RE

JOB_TYPE_PATTERN = re.compile(JOB_TYPE_NAME_RE)


# -- field types: each declares its bounds once, for the document and for its message -----------
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


def _job_type(value: Any) -> Any:
    if not isinstance(value, str) or not JOB_TYPE_PATTERN.match(value):
        raise invalid("job_type must be a name of letters, digits, - and _")
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
JobTypeName = Annotated[str, Field(pattern=JOB_TYPE_NAME_RE), BeforeValidator(_job_type)]
InputData = Annotated[
    dict[str, Any] | None,
    Field(
        description=f"A JSON object, at most {settings.TAKO_MAX_INPUT_BYTES} bytes serialized; "
        "the program reads it from /input/data.json"
    ),
    BeforeValidator(_input_data),
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
ErrorType = Literal[ERROR_TYPES]  # type: ignore[valid-type]
DEAD_LETTER_TYPE_NAMES = tuple(sorted(DEAD_LETTER_TYPES))
DeadLetterType = Literal[DEAD_LETTER_TYPE_NAMES]  # type: ignore[valid-type]
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
Uuid = Annotated[str, WithJsonSchema({"type": "string", "format": "uuid"})]


class Request(Schema):
    """A request body: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class Response(Schema):
    """A response body: a key the schema does not declare is a fault of the service, not a surprise
    for the client (the operations serialize with exclude_unset, so optional keys stay absent)."""

    model_config = ConfigDict(extra="forbid")


# -- requests --------------------------------------------------------------------------------------
class ExecuteRequest(Request):
    """POST /execute and /execute/async."""

    code: Code
    input_data: InputData = None
    timeout: Timeout | None = Field(
        None, description="Run time in seconds, container start excluded; default: the job type's timeout"
    )
    job_type: JobTypeName | None = "default"
    startup_timeout: StartupTimeout | None = Field(
        None, description="Container start and package install, in seconds; default: the job type's (60)"
    )
    requirements: Requirements | None = None
    idempotency_key: IdempotencyKey | None = None


class RerunRequest(Request):
    """POST /jobs/{job_id}/rerun: what to change (nothing: an empty body)."""

    job_type: JobTypeName | None = None
    timeout: Timeout | None = None


class ForkRequest(RerunRequest):
    """POST /jobs/{job_id}/fork: new code on the job's input."""

    code: Code


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


class PageQuery(Schema):
    limit: Annotated[int, Field(ge=1, le=1000), _query_int("limit", 1, 1000, 100)] = 100
    offset: Annotated[int, Field(ge=0, le=MAX_OFFSET), _query_int("offset", 0, MAX_OFFSET, 0)] = 0


STATUSES = tuple(Execution.Status.values)


class ExecutionQuery(PageQuery):
    status: Annotated[Execution.Status | None, BeforeValidator(_one_of("status", STATUSES))] = None
    job_type: str | None = None
    view: View = None


class RecordQuery(Schema):
    view: View = None


class ResultQuery(RecordQuery):
    wait: Annotated[bool, Field(description="Block until the job ends"), BeforeValidator(_wait)] = False
    timeout: Annotated[
        float, Field(ge=1, le=300, description="How long wait=true waits, in seconds"), BeforeValidator(_wait_timeout)
    ] = 30


class DeadLetterQuery(PageQuery):
    error_type: Annotated[DeadLetterType | None, BeforeValidator(_one_of("error_type", DEAD_LETTER_TYPE_NAMES))] = None


# -- responses: runs and records -------------------------------------------------------------------
class ExecuteResponse(Response):
    """Tako VM's ExecuteResponse, plus error_type, execution_id and runtime."""

    success: bool
    output: Any = Field(description="The parsed /output/result.json, or null")
    stdout: str
    stderr: str
    exit_code: int | None
    error: str | None
    error_type: ErrorType | None = None
    execution_time: float = Field(description="Seconds, request to result")
    job_type: str
    execution_id: Uuid | None = None
    runtime: str | None = None


class ErrorInfo(Response):
    type: ErrorType
    message: str | None
    phase: Literal["startup", "execution", "output"] | None


class Timing(Response):
    startup_ms: int | None
    dep_install_ms: int | None = None
    execution_ms: int | None
    total_ms: int | None
    phase_at_exit: Execution.Status


class ExecutionRecord(Response):
    """The execution record (view=slim, the default)."""

    execution_id: Uuid
    status: Execution.Status
    job_type: str
    created_at: Timestamp
    started_at: Timestamp | None
    ended_at: Timestamp | None
    duration_ms: int | None
    exit_code: int | None
    stdout: str
    stderr: str
    output: Any
    error: ErrorInfo | None
    timing: Timing
    correlation_id: str


class Artifact(Response):
    name: str
    size_bytes: int
    sha256: str
    content_type: str


class ResourceUsage(Response):
    max_rss_mb: float | None = None
    cpu_time_ms: int | None = None
    wall_time_ms: int | None = None


class Attempt(Response):
    """A try that failed on a transient Docker fault (then retried)."""

    attempt: int
    error: str
    at: str


class ExecutionRecordFull(ExecutionRecord):
    """The execution record with view=full."""

    artifacts: list[Artifact]
    resource_usage: ResourceUsage | None
    code_hash: str
    input_hash: str
    job_ref: str | None
    runtime: str | None
    warm_start: bool | None = Field(
        description="true: ran in a container of the warm pool; false: none was ready, started cold; "
        "null: its environment keeps no pool, or it installed its own packages"
    )
    parent_execution_id: Uuid | None
    relationship: Literal["rerun", "fork"] | None
    stdout_truncated: bool
    stderr_truncated: bool
    idempotency_key: str | None
    attempts: list[Attempt]


AnyRecord = ExecutionRecord | ExecutionRecordFull


class ExecutionPage(Response):
    items: list[AnyRecord]
    limit: int = Field(ge=1, le=1000)
    offset: int = Field(ge=0)
    has_more: bool
    count: int = Field(description="Number of items in this page")


# -- responses: jobs -------------------------------------------------------------------------------
class JobSubmitted(Response):
    job_id: Uuid
    status: Execution.Status
    parent_execution_id: Uuid | None = None
    relationship: Literal["rerun", "fork"] | None = None


class JobStatus(Response):
    job_id: Uuid
    status: Execution.Status
    created_at: Timestamp
    started_at: Timestamp | None
    ended_at: Timestamp | None = None
    queue_position: int | None = Field(None, description="1 = next to start")


class JobInProgress(Response):
    job_id: Uuid
    status: Literal[Execution.Status.QUEUED, Execution.Status.RUNNING]
    message: Literal["Job still in progress"]
    queue_position: int | None


class Cancelled(Response):
    status: Literal["cancelled"]
    job_id: Uuid
    job_status: Execution.Status | None = Field(None, description="the record's status when answering")


# -- responses: job types --------------------------------------------------------------------------
class JobType(Response):
    name: str
    requirements: list[str]
    python_version: str
    memory_limit: str
    cpu_limit: float
    timeout: int
    startup_timeout: int
    network_enabled: bool
    pool_size: int
    image: str
    image_exists: bool
    image_digest: str | None
    built_at: Timestamp | None
    build_status: Environment.BuildStatus
    build_error: str | None


class BuildResult(Response):
    status: Literal["built"]
    job_type: str
    version: str = Field(description="name@short digest")
    digest: str
    image_ref: str
    rebuilt: bool = Field(description="false when the image was already up to date")
    seconds: float
    size_bytes: int | None


# -- responses: operations -------------------------------------------------------------------------
class QueueStats(Response):
    pending: int
    running: int
    max_workers: int
    max_queue_size: int


class PoolCounts(Response):
    """One environment's warm pool summed over the worker hosts whose keeper is alive, and the jobs
    since each keeper started that got a pooled container (hits) or wanted one (misses)."""

    target: int = Field(ge=0)
    ready: int = Field(ge=0)
    in_use: int = Field(ge=0)
    starting: int = Field(ge=0)
    hits: int = Field(ge=0)
    misses: int = Field(ge=0)


class PoolStats(QueueStats):
    warm_pool: dict[str, PoolCounts]


class Breaker(Response):
    state: CircuitBreaker.State
    failure_count: int
    success_count: int
    last_failure: str | None
    last_failure_at: Timestamp | None = None
    opened_at: Timestamp | None = None


class Engine(Breaker):
    """A Docker engine in use (one per worker host), with its own breaker."""

    name: str


class Process(Response):
    """A long-running process (the web server, a worker cluster, a pool keeper) and its last beat."""

    host: str
    role: ProcessBeat.Role
    pid: int
    engine: str | None = Field(description="The Docker engine it drives")
    started_at: Timestamp
    last_beat_seconds: float
    alive: bool


class Health(Response):
    status: Literal["healthy", "degraded"]
    docker_available: bool
    circuit_breaker: Breaker
    engines: list[Engine]
    version: str
    queue_stats: QueueStats
    warm_pool: dict[str, PoolCounts]
    processes: list[Process] = Field(description="Every process seen in the last hour, by host")


class Check(Response):
    ok: bool
    detail: str


class Checks(Response):
    database: Check = Field(description="The database answers")
    migrations: Check = Field(description="Every migration is applied")
    queue: Check = Field(description="The job queue (Redis, or the database's queue table) answers")
    engine: Check = Field(description="This host's Docker engine answers, or (web-only) a worker's engine works")


class Readiness(Response):
    ready: bool = Field(description="True only when every check passed")
    checks: Checks


class JobData(Response):
    code: str
    input_data: dict[str, Any]
    job_type: str
    timeout: int
    startup_timeout: int | None = None
    requirements: list[str] | None = None


class DeadLetter(Response):
    id: int
    job_id: Uuid | None
    job_data: JobData
    error_type: DeadLetterType
    error_message: str
    retry_count: int
    created_at: Timestamp
    client_ip: str | None
    correlation_id: str
    requeued_at: Timestamp | None
    requeued_by: str | None
    requeued_job_id: Uuid | None


class DeadLetterPage(Response):
    items: list[DeadLetter]
    limit: int
    offset: int
    has_more: bool
    count: int


class DeadLetterStats(Response):
    total: int
    by_error_type: dict[str, int]


class Removed(Response):
    status: Literal["removed"]
    entry_id: int


class Requeued(Response):
    job_id: Uuid
    status: Execution.Status
    entry_id: int


# -- error bodies (answered by api/errors.py; declared here for the document) ---------------------
class Error(Schema):
    """Tako VM's error body."""

    model_config = ConfigDict(extra="allow")

    detail: str = Field(description="One readable sentence saying what is wrong")
    correlation_id: str
    errors: dict[str, list[str]] | None = Field(None, description="422 only: every failed field with its messages")


class IdempotencyConflict(Response):
    """The idempotency_key was used for another payload."""

    detail: str
    error: str
    existing_job_id: Uuid
    correlation_id: str


class WaitTimeout(Response):
    """The job did not end within `timeout`."""

    detail: Literal["Timeout waiting for job"]
    error: Literal["Timeout waiting for job"]
    job_id: str
    correlation_id: str


class Unavailable(Response):
    """The queue is full or Docker is unavailable: retry after Retry-After seconds."""

    detail: str
    correlation_id: str
    error_type: Literal["service_unavailable"]


def paginated(rows: Any, query: PageQuery, serialize: Callable[[Any], Any]) -> dict[str, Any]:
    """One page of a queryset as the API lists it: items, limit, offset, has_more, count."""
    fetched = list(rows[query.offset : query.offset + query.limit + 1])  # one extra tells has_more
    items = [serialize(row) for row in fetched[: query.limit]]
    return {
        "items": items,
        "limit": query.limit,
        "offset": query.offset,
        "has_more": len(fetched) > query.limit,
        "count": len(items),
    }
