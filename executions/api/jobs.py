"""The async job endpoints: submit, status, result (with wait), cancel, rerun, fork, artifacts."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponseBase, HttpResponseNotModified, JsonResponse

from executions import services
from executions.api.decorators import api_view, parse_json_body, submitter
from executions.api.errors import ApiError
from executions.api.forms import parse_view, parse_wait
from executions.models import Artifact, Execution

RESULT_POLL_SECONDS = 0.1
# A waiting client looks often while most jobs end (a warm pool's run takes tens of milliseconds),
# then settles to RESULT_POLL_SECONDS.
RESULT_FIRST_POLLS = (0.01, 0.01, 0.02, 0.02, 0.03, 0.05, 0.05)
CANCEL_WAIT_SECONDS = 15


def _job_or_404(request: HttpRequest, job_id: Any) -> Execution:
    """The job, if this caller may see it (admins: any; others: their own)."""
    execution = request.principal.executions().filter(pk=job_id).first()  # type: ignore[attr-defined]
    if execution is None:
        raise ApiError(404, "Job not found")
    return execution


def _submitted(admitted: services.Admitted) -> JsonResponse:
    execution = admitted.execution
    body = {"job_id": str(execution.pk), "status": execution.status}
    if execution.relationship:
        body |= {"parent_execution_id": str(execution.parent_execution_id), "relationship": execution.relationship}
    return JsonResponse(body, status=202 if admitted.created else 200)


@api_view("POST")
def execute_async(request: HttpRequest) -> JsonResponse:
    job = services.execute_request_parse(parse_json_body(request))
    admitted = services.execution_submit(job, submitter=submitter(request))
    return _submitted(admitted)


@api_view("GET")
def job_status(request: HttpRequest, job_id: str) -> JsonResponse:
    execution = _job_or_404(request, job_id)
    return JsonResponse({**execution.to_job_status(), "queue_position": services.queue_position(execution)})


def _result_body(request: HttpRequest, job_id: Any, full: bool) -> tuple[dict[str, Any], bool]:
    execution = _job_or_404(request, job_id)
    if not execution.is_terminal:
        return {
            "job_id": str(execution.pk),
            "status": execution.status,
            "message": "Job still in progress",
            "queue_position": services.queue_position(execution),
        }, False
    return execution.to_dict(full=full), True


@api_view("GET")
async def job_result(request: HttpRequest, job_id: str) -> JsonResponse:
    full = parse_view(request.GET)
    wait, timeout = parse_wait(request.GET)
    deadline = time.monotonic() + timeout
    for poll in itertools.count():
        body, ended = await sync_to_async(_result_body)(request, job_id, full)
        if ended or not wait:
            return JsonResponse(body)
        if time.monotonic() >= deadline:
            raise ApiError(408, "Timeout waiting for job", error="Timeout waiting for job", job_id=str(job_id))
        await asyncio.sleep(RESULT_FIRST_POLLS[poll] if poll < len(RESULT_FIRST_POLLS) else RESULT_POLL_SECONDS)
    raise AssertionError("unreachable")


@api_view("POST")
async def job_cancel(request: HttpRequest, job_id: str) -> JsonResponse:
    """Cancel a queued job, or stop a running one and answer once its container is gone."""

    def cancel() -> Execution:
        return services.execution_cancel(_job_or_404(request, job_id))

    execution = await sync_to_async(cancel)()
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while not execution.is_terminal and time.monotonic() < deadline:
        await asyncio.sleep(RESULT_POLL_SECONDS)
        await execution.arefresh_from_db(fields=["status"])
    return JsonResponse({"status": "cancelled", "job_id": str(execution.pk), "job_status": execution.status})


def _derive(request: HttpRequest, job_id: str, relationship: str) -> JsonResponse:
    parent = _job_or_404(request, job_id)
    changes = services.derive_request_parse(
        parse_json_body(request, allow_empty=True), require_code=relationship == "fork"
    )
    admitted = services.execution_derive(
        parent, relationship=relationship, changes=changes, submitter=submitter(request)
    )
    return _submitted(admitted)


@api_view("POST")
def job_rerun(request: HttpRequest, job_id: str) -> JsonResponse:
    return _derive(request, job_id, "rerun")


@api_view("POST")
def job_fork(request: HttpRequest, job_id: str) -> JsonResponse:
    return _derive(request, job_id, "fork")


@api_view("GET")
def job_artifact(request: HttpRequest, job_id: str, name: str) -> HttpResponseBase:
    """One artifact: looked up by exact name among the job's own, never by building a path."""
    execution = _job_or_404(request, job_id)
    artifact = Artifact.objects.filter(execution=execution, name=name).first()
    path = Path(artifact.path) if artifact else None
    root = Path(settings.DATA_DIR).resolve() / "artifacts" / str(execution.pk)
    if artifact is None or path is None or path.resolve().parent != root or not path.is_file():
        raise ApiError(404, "Artifact not found")
    etag = f'"sha256:{artifact.sha256}"'
    if etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
        response: HttpResponseBase = HttpResponseNotModified()
    else:
        response = FileResponse(path.open("rb"), as_attachment=True, filename=artifact.name)
        response["Content-Type"] = artifact.content_type
        response["Content-Length"] = str(artifact.size_bytes)
    response["ETag"] = etag
    return response


@api_view("GET")
def pool_stats(request: HttpRequest) -> JsonResponse:
    return JsonResponse({**services.queue_stats().to_dict(), "warm_pool": services.pool_stats()})
