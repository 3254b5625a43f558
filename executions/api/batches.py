"""Batches: one job per input, submitted and admitted as a whole (POST /execute/batch), followed
(GET /batches/{id}) and cancelled (POST /batches/{id}/cancel). A caller sees its own batches
(admins and anonymous use: all), as with executions."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from django.http import HttpRequest
from ninja.responses import Status

from executions import services
from executions.api.auth import EXECUTE, caller, submitter
from executions.api.errors import ApiError
from executions.api.routing import JsonOrMultipartBody, Router
from executions.api.schemas import (
    MULTIPART_BODY,
    BatchCancelled,
    BatchRequest,
    BatchStatus,
    BatchSubmitted,
    Error,
    Unavailable,
)
from executions.models import Batch
from executions.selectors import batch_progress, batches_visible_to

router = Router(auth=EXECUTE, tags=["batches"])


@router.post(
    "/execute/batch",
    response={202: BatchSubmitted, 400: Error, 415: Error, 422: Error, 503: Unavailable},
    summary="Queue one job per input, as a whole (over quota: 429; no room for all: 503; nothing queued)",
    openapi_extra=MULTIPART_BODY,
)
def execute_batch(request: HttpRequest, payload: Annotated[BatchRequest, JsonOrMultipartBody(...)]) -> Status[object]:
    """JSON, or multipart/form-data (a `request` part and one part per file) like POST /execute/async;
    the files are written under /input for every job."""
    batch_request = services.batch_request_parse(payload.model_dump(exclude_unset=True))
    batch, executions = services.batch_submit(batch_request, submitter=submitter(request))
    return Status(202, {"batch_id": str(batch.pk), "job_ids": [str(e.pk) for e in executions]})


def _batch_or_404(request: HttpRequest, batch_id: UUID) -> Batch:
    principal = caller(request)
    batch = batches_visible_to(principal.user, sees_all=principal.is_admin).filter(pk=batch_id).first()
    if batch is None:
        raise ApiError(404, "Batch not found")
    return batch


def _progress(batch: Batch) -> dict[str, Any]:
    progress = batch_progress(batch)
    del progress["ended"]
    return progress


@router.get("/batches/{uuid:batch_id}", response={200: BatchStatus, 404: Error}, summary="A batch's progress")
def batch_status(request: HttpRequest, batch_id: UUID) -> dict[str, Any]:
    return _progress(_batch_or_404(request, batch_id))


@router.post(
    "/batches/{uuid:batch_id}/cancel",
    response={200: BatchCancelled, 404: Error},
    summary="Cancel every job of the batch that has not ended",
)
def batch_cancel(request: HttpRequest, batch_id: UUID) -> dict[str, Any]:
    batch = _batch_or_404(request, batch_id)
    cancelled = services.batch_cancel(batch)
    return {**_progress(batch), "cancelled": cancelled}
