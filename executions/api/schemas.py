"""Every shape the JSON API reads or writes, once (docs/API.md): request validation, response
serialization, /openapi.json and /docs all come from these models, built on api/fields.py.

A request field that breaks a rule is refused with Tako's one readable sentence, answered by
api/errors.py as `{"detail": ..., "errors": {field: [messages]}}`. What needs the database (does
the job type exist?) or is not a shape (is input_data under 1 MB?) stays with admission
(services/job_requests.py), which every entry point shares.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from ninja import Schema
from pydantic import ConfigDict, Field

from executions.api.fields import (
    Code,
    DeadLetterType,
    DeadLetterTypeFilter,
    ErrorType,
    Files,
    IdempotencyKey,
    InputData,
    Inputs,
    JobTypeName,
    Limit,
    Offset,
    Requirements,
    StartupTimeout,
    StatusFilter,
    Timeout,
    Timestamp,
    Uuid,
    View,
    Wait,
    WaitSeconds,
    WebhookUrl,
)
from executions.models import CircuitBreaker, Environment, Execution, ProcessBeat


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
    files: Files | None = None


class WebhookTarget(Request):
    """Where to POST each job's record when it ends (async submissions and batches)."""

    webhook_url: WebhookUrl | None = None


class AsyncExecuteRequest(ExecuteRequest, WebhookTarget):
    """POST /execute/async: a job, and optionally its webhook."""


class BatchRequest(WebhookTarget):
    """POST /execute/batch: the same code, settings and files for every input (a webhook per job)."""

    code: Code
    inputs: Inputs
    job_type: JobTypeName | None = "default"
    timeout: Timeout | None = Field(None, description="Each job's run time in seconds; default: the job type's")
    startup_timeout: StartupTimeout | None = None
    requirements: Requirements | None = None
    files: Files | None = None  # written under /input for every job of the batch


# The same request as multipart/form-data (routing.read_json_or_multipart), for the document.
MULTIPART_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["request"],
                    "properties": {"request": {"type": "string", "description": "The JSON body, without files"}},
                    "additionalProperties": {
                        "type": "string",
                        "format": "binary",
                        "description": "One part per input file: its filename is its path under /input",
                    },
                }
            }
        }
    }
}


class RerunRequest(Request):
    """POST /jobs/{job_id}/rerun: what to change (nothing: an empty body)."""

    job_type: JobTypeName | None = None
    timeout: Timeout | None = None


class ForkRequest(RerunRequest):
    """POST /jobs/{job_id}/fork: new code on the job's input."""

    code: Code


# -- query strings ---------------------------------------------------------------------------------
class PageQuery(Schema):
    limit: Limit = 100
    offset: Offset = 0


class ExecutionQuery(PageQuery):
    status: StatusFilter = None
    job_type: str | None = None
    view: View = None


class RecordQuery(Schema):
    view: View = None


class ResultQuery(RecordQuery):
    wait: Wait = False
    timeout: WaitSeconds = 30


class DeadLetterQuery(PageQuery):
    error_type: DeadLetterTypeFilter = None


class AuditQuery(PageQuery):
    action: str | None = Field(
        None, max_length=64, description="An action (dlq.requeue) or its family (dlq): every action under it"
    )
    actor: str | None = Field(None, max_length=150, description="Who acted, exactly as recorded")
    since: datetime | None = Field(None, description="Events at or after this time")
    until: datetime | None = Field(None, description="Events before this time")


# -- responses: runs and records -------------------------------------------------------------------
class Display(Response):
    """One display() output: an HTML table (text/html), JSON, text, or a figure saved as an artifact."""

    mime: Literal["text/html", "image/png", "application/json", "text/plain"]
    data: Any = Field(None, description="The output itself (absent for image/png)")
    artifact: str | None = Field(None, description="image/png: the artifact holding the figure (figure-N.png)")


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
    displays: list[Display] = Field([], description="The program's display() outputs, in order")


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


class InputFileInfo(Response):
    path: str
    size_bytes: int
    sha256: str


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
    files: list[InputFileInfo] = Field(description="The input files the request sent, under /input")
    displays: list[Display] = Field(description="The program's display() outputs, in order")
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
    job_version: str | None = Field(
        None, description="The version tag of its job type it ran on, when it asked for one"
    )


AnyRecord = ExecutionRecord | ExecutionRecordFull


class WebhookAttempt(Response):
    """One POST of the job's webhook: the receiver's status code, or why there was none."""

    attempt: int = Field(ge=1)
    status_code: int | None
    error: str | None = Field(description="null when the receiver answered 2xx")
    at: Timestamp


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


class BatchSubmitted(Response):
    batch_id: Uuid
    job_ids: list[Uuid] = Field(description="One job per input, in the order of the inputs")


class BatchItem(Response):
    job_id: Uuid
    status: Execution.Status
    error_type: ErrorType | None


class BatchStatus(Response):
    batch_id: Uuid
    total: int = Field(ge=1)
    counts: dict[str, int] = Field(description="How many of its jobs are in each status (those present)")
    done: bool = Field(description="Every job has ended")
    items: list[BatchItem]


class BatchCancelled(BatchStatus):
    cancelled: int = Field(ge=0, description="Jobs this request cancelled (queued) or asked to stop (running)")


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
class JobTypeVersion(Response):
    """One build of a job type: `name@<tag>` or `name@sha256:<digest>` runs on it."""

    tag: str
    digest: str = Field(description="sha256:… of the image")
    image_ref: str
    size_bytes: int | None
    built_at: Timestamp


class PreloadStatus(Response):
    """What the last check of the preload list on the current image found. Pools preload only
    when it is "ok"; otherwise jobs import the modules themselves (runs still work)."""

    state: Literal["none", "unchecked", "ok", "failed"]
    modules: list[str]
    errors: dict[str, str] = Field(description="module: why it failed to import")
    failure: str | None = Field(None, description="why the check could not import them at all (a crash, a timeout)")
    resident_bytes: int | None = Field(description="one waiting pooled container's memory with the modules loaded")
    checked_at: Timestamp | None


class JobType(Response):
    name: str
    requirements: list[str]
    python_version: str
    memory_limit: str
    cpu_limit: float
    timeout: int
    startup_timeout: int
    network_enabled: bool
    runtime: Literal["runc", "runsc"] = Field(description="the OCI runtime its containers run under (runsc: gVisor)")
    runtime_available: bool | None = Field(
        None, description="a live worker host's engine has the runtime (null: no host has reported yet)"
    )
    pool_size: int | None = Field(
        description="containers kept started ahead of time on each worker host; null: sized from recent demand"
    )
    preload: list[str] = Field(description="modules its pooled interpreters import before a job arrives")
    preload_status: PreloadStatus
    image: str
    image_exists: bool = Field(description="a build recorded the image (stored state; Docker is not asked)")
    image_ref: str | None = Field(description="name@sha256:… of the image the last build recorded")
    image_digest: str | None
    built_at: Timestamp | None
    build_status: Environment.BuildStatus = Field(
        description="queued or building while a worker has the build; then built, or failed (see build_error)"
    )
    build_error: str | None
    versions: list[JobTypeVersion] | None = Field(
        None, description="GET /job-types/{name} only: every build, newest first"
    )


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
    resident_bytes: int = Field(
        ge=0, description="memory its ready containers hold while they wait (preloads included)"
    )


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


class JobDataVersion(Response):
    tag: str
    digest: str = Field(description="sha256:… of the image")


class JobData(Response):
    code: str
    input_data: dict[str, Any]
    job_type: str
    timeout: int
    startup_timeout: int | None = None
    requirements: list[str] | None = None
    job_version: JobDataVersion | None = Field(
        None, description="The build of its job type the job asked for (name@…): a requeue runs on it"
    )


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


class AuditEvent(Response):
    """One admin action: who (a user, with the API key used, or an address), what, to what, when."""

    id: int
    at: Timestamp
    actor: str
    action: str = Field(description="dlq.requeue, dlq.delete, environment.build, apikey.create, apikey.revoke, "
                        "admin.<model>.<add|change|delete>, login.failed, login.locked_out, …")  # fmt: skip
    target: str
    detail: dict[str, Any]
    correlation_id: str
    client_ip: str | None


class AuditPage(Response):
    items: list[AuditEvent]
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


class BulkRequeueRequest(Request):
    """Every entry not yet requeued that matches all the filters given; at least one is required."""

    error_type: DeadLetterType | None = None
    created_after: datetime | None = Field(None, description="Entries created at or after this time")
    created_before: datetime | None = Field(None, description="Entries created before this time")
    ids: list[int] | None = Field(None, max_length=1000, description="These entries (each answered for)")


class BulkRequeueSkipped(Response):
    entry_id: int
    reason: str


class BulkRequeued(Response):
    requeued: int = Field(description="How many entries were requeued (one new job each)")
    jobs: list[Requeued]
    skipped: list[BulkRequeueSkipped]


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
