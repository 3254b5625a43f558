"""Jobs and their records: status, result (with wait), cancel, rerun, fork, artifacts, and the
list of execution records. A caller sees its own jobs (admins and anonymous use: all)."""

from __future__ import annotations

import asyncio
import mimetypes
import time
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponseBase, HttpResponseNotModified
from ninja import Query
from ninja.params.models import Path as PathParam
from ninja.params.models import PathModel
from ninja.responses import Status

from executions import services
from executions.api.auth import EXECUTE, caller, submitter
from executions.api.errors import ApiError
from executions.api.execute import submitted
from executions.api.routing import JsonBodyOrEmpty, Router
from executions.api.schemas import (
    AnyRecord,
    Cancelled,
    Error,
    ExecutionPage,
    ExecutionQuery,
    ForkRequest,
    JobInProgress,
    JobStatus,
    JobSubmitted,
    RecordQuery,
    RerunRequest,
    ResultQuery,
    Unavailable,
    WaitTimeout,
    WebhookAttempt,
    paginated,
)
from executions.errors import NotFound
from executions.live import execution_wait_for_end
from executions.models import Artifact, Execution
from executions.selectors import webhook_attempts_of

router = Router(auth=EXECUTE, tags=["jobs"])

CANCEL_POLL_SECONDS = 0.1
CANCEL_WAIT_SECONDS = 15


def _job_or_404(request: HttpRequest, job_id: UUID) -> Execution:
    """The job, if this caller may see it (admins: any; others: their own)."""
    execution = caller(request).executions().filter(pk=job_id).first()
    if execution is None:
        raise ApiError(404, "Job not found")
    return execution


@router.get("/jobs/{uuid:job_id}", response={200: JobStatus, 404: Error}, summary="A job's status")
def job_status(request: HttpRequest, job_id: UUID) -> dict[str, Any]:
    execution = _job_or_404(request, job_id)
    return {**execution.to_job_status(), "queue_position": services.queue_position(execution)}


def _result_body(request: HttpRequest, job_id: UUID, full: bool, waiting: bool) -> dict[str, Any] | None:
    """The record if ended; else its progress, or None for a caller who waits for the end (who
    would not see it: its queue position costs two queries, which a waiting job's start would share
    the CPU with)."""
    execution = _job_or_404(request, job_id)
    if not execution.is_terminal:
        if waiting:
            return None
        return {
            "job_id": str(execution.pk),
            "status": execution.status,
            "message": "Job still in progress",
            "queue_position": services.queue_position(execution),
        }
    return execution.to_dict(full=full)


@router.get(
    "/jobs/{uuid:job_id}/result",
    response={200: AnyRecord | JobInProgress, 400: Error, 404: Error, 408: WaitTimeout, 422: Error},
    summary="A job's execution record, optionally waiting for it to end",
)
async def job_result(request: HttpRequest, job_id: UUID, query: Query[ResultQuery]) -> dict[str, Any]:
    """The record once ended; without wait, the progress while it runs."""
    deadline = time.monotonic() + query.timeout
    body = await sync_to_async(_result_body)(request, job_id, query.view == "full", query.wait)
    if body is not None:
        return body
    # (the caller may see it: the first read checked; a job is never handed to another caller)
    execution = await execution_wait_for_end(job_id, deadline - time.monotonic())
    if execution is None:
        raise ApiError(408, "Timeout waiting for job", error="Timeout waiting for job", job_id=str(job_id))
    if query.view == "full":  # (its artifacts and files are read too)
        return await sync_to_async(execution.to_dict)(full=True)
    return execution.to_dict()


@router.post(
    "/jobs/{uuid:job_id}/cancel",
    response={200: Cancelled, 404: Error, 409: Error},
    summary="Cancel a queued job or stop a running one (answers once it has stopped)",
)
async def job_cancel(request: HttpRequest, job_id: UUID) -> dict[str, Any]:
    """409 when the job had already ended."""

    def cancel() -> Execution:
        return services.execution_cancel(_job_or_404(request, job_id))

    execution = await sync_to_async(cancel)()
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while not execution.is_terminal and time.monotonic() < deadline:
        await asyncio.sleep(CANCEL_POLL_SECONDS)
        await execution.arefresh_from_db(fields=["status"])
    return {"status": "cancelled", "job_id": str(execution.pk), "job_status": execution.status}


class _VisibleJobModel(PathModel):
    @classmethod
    def resolve(cls, request: HttpRequest, api: Any, path_params: Any) -> Any:
        values = super().resolve(request, api, path_params)
        _job_or_404(request, values.job_id)  # type: ignore[attr-defined]  # (the operation's parameter)
        return values


class VisibleJob(PathParam):  # type: ignore[misc]
    """A job_id path parameter whose job must exist (and be the caller's) before the body is read:
    an unknown job is a 404 whatever was sent. It queries the database: sync operations only."""

    _model = _VisibleJobModel

    @classmethod
    def _param_source(cls) -> str:
        return "path"


DERIVED = {202: JobSubmitted, 400: Error, 404: Error, 415: Error, 422: Error, 503: Unavailable}
JobId = Annotated[UUID, VisibleJob(...)]


@router.post("/jobs/{uuid:job_id}/rerun", response=DERIVED, summary="Run a job's code again, as a new job")
def job_rerun(
    request: HttpRequest, job_id: JobId, payload: Annotated[RerunRequest, JsonBodyOrEmpty({})]
) -> Status[object]:
    """Same code, input and settings; the body may change job_type and timeout."""
    return _derive(request, job_id, "rerun", payload)


@router.post("/jobs/{uuid:job_id}/fork", response=DERIVED, summary="Run new code on a job's input, as a new job")
def job_fork(
    request: HttpRequest, job_id: JobId, payload: Annotated[ForkRequest, JsonBodyOrEmpty({})]
) -> Status[object]:
    return _derive(request, job_id, "fork", payload)


def _derive(request: HttpRequest, job_id: UUID, relationship: str, payload: RerunRequest) -> Status[object]:
    parent = _job_or_404(request, job_id)
    changes = services.derive_request_parse(payload.model_dump(exclude_unset=True), require_code=relationship == "fork")
    admitted = services.execution_derive(
        parent, relationship=relationship, changes=changes, submitter=submitter(request)
    )
    return submitted(admitted)


# A stored file as a download (an artifact, an input file): the document's 200 and 304.
DOWNLOAD = {
    "responses": {
        200: {"description": "The file", "content": {"application/octet-stream": {}}},
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
    }
}


@router.get(
    "/jobs/{uuid:job_id}/artifacts/{str:name}",
    response={200: None, 304: None, 404: Error},
    summary="Download a file the job left in /output (HEAD too; ETag, If-None-Match → 304)",
    openapi_extra=DOWNLOAD,
)
def job_artifact(request: HttpRequest, job_id: UUID, name: str) -> HttpResponseBase:
    """One artifact: looked up by exact name among the job's own, never by building a path."""
    execution = _job_or_404(request, job_id)
    artifact = Artifact.objects.filter(execution=execution, name=name).first()
    path = Path(artifact.path) if artifact else None
    root = Path(settings.DATA_DIR).resolve() / "artifacts" / str(execution.pk)
    if artifact is None or path is None or path.resolve().parent != root or not path.is_file():
        raise ApiError(404, "Artifact not found")
    return _file_response(
        request,
        path,
        name=artifact.name,
        sha256=artifact.sha256,
        size=artifact.size_bytes,
        content_type=artifact.content_type,
    )


@router.get(
    "/jobs/{uuid:job_id}/webhooks",
    response={200: list[WebhookAttempt], 404: Error},
    summary="Every attempt to deliver the job's webhook, first first (none: [])",
)
def job_webhooks(request: HttpRequest, job_id: UUID) -> list[dict[str, Any]]:
    return [attempt.to_dict() for attempt in webhook_attempts_of(_job_or_404(request, job_id))]


# -- execution records ---------------------------------------------------------------------------------
@router.get("/executions", response={200: ExecutionPage, 422: Error}, summary="List execution records, newest first")
def execution_list(request: HttpRequest, query: Query[ExecutionQuery]) -> dict[str, Any]:
    records = caller(request).executions()
    if query.status:
        records = records.filter(status=query.status)
    if query.job_type:
        records = records.filter(job_type=query.job_type)
    full = query.view == "full"
    if full:
        records = records.prefetch_related("artifacts", "input_files")
    return paginated(records, query, lambda row: row.to_dict(full=full))


@router.get(
    "/executions/{uuid:execution_id}",
    response={200: AnyRecord, 404: Error, 422: Error},
    summary="One execution record",
)
def execution_detail(request: HttpRequest, execution_id: UUID, query: Query[RecordQuery]) -> dict[str, Any]:
    execution = caller(request).executions().filter(pk=execution_id).first()
    if execution is None:
        raise ApiError(404, "Execution not found")
    return execution.to_dict(full=query.view == "full")


@router.get(
    "/executions/{uuid:execution_id}/files/{path:path}",
    response={200: None, 304: None, 404: Error},
    summary="Download an input file the request sent (HEAD too; ETag, If-None-Match → 304)",
    openapi_extra=DOWNLOAD,
)
def execution_input_file(request: HttpRequest, execution_id: UUID, path: str) -> HttpResponseBase:
    """Looked up by exact path among the execution's own files; same visibility as the record."""
    execution = caller(request).executions().filter(pk=execution_id).first()
    if execution is None:
        raise ApiError(404, "Execution not found")
    try:
        row, blob = services.input_file_find(execution, path)
    except NotFound as exc:
        raise ApiError(404, exc.message) from None
    return _file_response(request, blob, name=row.path, sha256=row.sha256, size=row.size_bytes)


def _file_response(
    request: HttpRequest, path: Path, *, name: str, sha256: str, size: int, content_type: str = ""
) -> HttpResponseBase:
    """A stored file as a download: ETag from its sha256, If-None-Match → 304."""
    etag = f'"sha256:{sha256}"'
    if etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
        response: HttpResponseBase = HttpResponseNotModified()
    else:
        response = FileResponse(path.open("rb"), as_attachment=True, filename=name.rsplit("/", 1)[-1])
        response["Content-Type"] = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        response["Content-Length"] = str(size)
    response["ETag"] = etag
    return response
