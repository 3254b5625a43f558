"""POST /execute (run now, answer with the result) and POST /execute/async (queue a job)."""

from __future__ import annotations

from typing import Annotated

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja.responses import Status

from executions import services
from executions.api.auth import EXECUTE, submitter
from executions.api.routing import JsonOrMultipartBody, Router, in_worker_thread
from executions.api.schemas import (
    MULTIPART_BODY,
    AsyncExecuteRequest,
    Error,
    ExecuteRequest,
    ExecuteResponse,
    IdempotencyConflict,
    JobSubmitted,
    Unavailable,
)
from executions.live import execution_wait_for_end
from executions.models import Execution
from executions.timings import timing_header, timing_mark, timing_start

router = Router(auth=EXECUTE, tags=["run"])

SYNC_RECHECK_SECONDS = 5.0  # the watcher wakes it at the end; a read of its own now and then as well
REFUSALS = {400: Error, 409: IdempotencyConflict, 415: Error, 422: Error, 503: Unavailable}


@router.post(
    "/execute",
    response={200: ExecuteResponse, **REFUSALS},
    summary="Run code and wait for the result",
    openapi_extra=MULTIPART_BODY,
)
async def execute(
    request: HttpRequest, response: HttpResponse, payload: Annotated[ExecuteRequest, JsonOrMultipartBody(...)]
) -> dict[str, object]:
    """Tako VM's sync endpoint. The run ended (successfully or not), or an earlier one with the
    same idempotency_key did. The `Server-Timing` header says where the time went."""
    steps = timing_start()

    def parse_and_admit() -> tuple[services.ExecuteRequest, services.Admitted]:  # (one hop to a thread, not two)
        job = services.execute_request_parse(payload.model_dump(exclude_unset=True))
        timing_mark("parse")
        admitted = services.execution_submit_sync(job, submitter=submitter(request))
        timing_mark("admit")
        return job, admitted

    job, admitted = await sync_to_async(parse_and_admit)()
    execution = admitted.execution
    if admitted.created and settings.TAKO_WEB_USES_DOCKER:
        # Runs here (not on the cluster) but within the same worker budget: it waits for a free slot.
        execution = await in_worker_thread(
            services.execution_run,
            execution_id=execution.pk,
            execution=execution,
            environment=job.environment,
            role="web",
        )
    else:  # a worker runs it (a web-only machine), or it is a retry of a run: answer when it has ended
        if admitted.created:
            await sync_to_async(services.execution_dispatch)(execution)
        while not execution.is_terminal:  # (no deadline: the job's own timeouts end it)
            await execution_wait_for_end(execution.pk, SYNC_RECHECK_SECONDS)
            await execution.arefresh_from_db()
    body = execution.to_sync_response()
    timing_mark("respond")
    response["Server-Timing"] = timing_header(steps)
    return body


@router.post(
    "/execute/async",
    response={202: JobSubmitted, 200: JobSubmitted, **REFUSALS},
    summary="Queue code to run on the worker cluster",
    openapi_extra=MULTIPART_BODY,
)
def execute_async(
    request: HttpRequest, payload: Annotated[AsyncExecuteRequest, JsonOrMultipartBody(...)]
) -> Status[object]:
    """202: queued; 200: the job already submitted with this idempotency_key. With webhook_url,
    the record is POSTed there when the job ends (GET /jobs/{id}/webhooks lists the attempts)."""
    job = services.execute_request_parse(payload.model_dump(exclude_unset=True))
    return submitted(services.execution_submit(job, submitter=submitter(request)))


def submitted(admitted: services.Admitted) -> Status[object]:
    """A new job (202), or the one an idempotency key already made (200)."""
    execution: Execution = admitted.execution
    body: dict[str, object] = {"job_id": str(execution.pk), "status": execution.status}
    if execution.relationship:
        body |= {"parent_execution_id": str(execution.parent_execution_id), "relationship": execution.relationship}
    return Status(202 if admitted.created else 200, body)
