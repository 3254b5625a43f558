"""Endpoints for operators: /health, /health/ready, /pool/stats, the dead letter queue, /metrics."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import Query
from ninja.responses import Status
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from executions import services
from executions.api.auth import ADMIN, EXECUTE, caller
from executions.api.errors import ApiError, ServiceUnavailable
from executions.api.routing import Router
from executions.api.schemas import (
    AuditPage,
    AuditQuery,
    BulkRequeued,
    BulkRequeueRequest,
    DeadLetterPage,
    DeadLetterQuery,
    DeadLetterStats,
    Error,
    Health,
    PoolStats,
    Readiness,
    Removed,
    Requeued,
    Unavailable,
    paginated,
)
from executions.health import health_report, readiness_report
from executions.metrics import DatabaseCollector
from executions.models import AuditEvent as AuditEventModel
from executions.models import DeadLetter
from executions.resilience import no_engine_available

router = Router(auth=ADMIN, tags=["operations"])


@router.get(
    "/health",
    auth=None,
    response=Health,
    summary="Health: the engine, the circuit breaker, the queue (answers fast even if Docker hangs)",
)
def health(request: HttpRequest) -> dict[str, Any]:
    return health_report()


@router.get(
    "/health/ready",
    auth=None,
    response={200: Readiness, 503: Readiness},
    summary="Readiness: 200 only when the database, its migrations, the queue and an engine all answer",
)
def ready(request: HttpRequest) -> Status[dict[str, Any]]:
    """For load balancers and the container's HEALTHCHECK: 200 only when this process can serve;
    503 names the checks that failed and why."""
    report = readiness_report()
    return Status(200 if report["ready"] else 503, report)


@router.get(
    "/pool/stats",
    auth=EXECUTE,
    response=PoolStats,
    summary="Queue, worker budget and the warm pool of each environment",
)
def pool_stats(request: HttpRequest) -> dict[str, Any]:
    return {**services.queue_stats().to_dict(), "warm_pool": services.pool_stats()}


@router.get("/dlq", response={200: DeadLetterPage, 422: Error}, summary="Dead letter queue entries, newest first")
def dlq_list(request: HttpRequest, query: Query[DeadLetterQuery]) -> dict[str, Any]:
    entries = DeadLetter.objects.all()
    if query.error_type:
        entries = entries.filter(error_type=query.error_type)
    return paginated(entries, query, DeadLetter.to_dict)


@router.get("/audit", response={200: AuditPage, 422: Error}, summary="The audit log: admin actions, newest first")
def audit(request: HttpRequest, query: Query[AuditQuery]) -> dict[str, Any]:
    events = services.audit_events(action=query.action, actor=query.actor, since=query.since, until=query.until)
    return paginated(events, query, AuditEventModel.to_dict)


@router.get("/dlq/stats", response=DeadLetterStats, summary="Dead letter queue counts")
def dlq_stats(request: HttpRequest) -> dict[str, object]:
    return services.dlq_stats()


def _entry_or_404(entry_id: int) -> DeadLetter:
    entry = DeadLetter.objects.filter(pk=entry_id).first()
    if entry is None:
        raise ApiError(404, "DLQ entry not found")
    return entry


@router.delete("/dlq/{int:entry_id}", response={200: Removed, 404: Error}, summary="Remove an entry")
def dlq_entry(request: HttpRequest, entry_id: int) -> dict[str, Any]:
    services.dlq_delete(_entry_or_404(entry_id), by=caller(request).actor)
    return {"status": "removed", "entry_id": entry_id}


@router.post(
    "/dlq/{int:entry_id}/requeue",
    response={202: Requeued, 404: Error, 409: Error, 422: Error, 503: Unavailable},
    summary="Run an entry's job again, as a new job linked to it",
)
def dlq_requeue(request: HttpRequest, entry_id: int) -> Status[dict[str, Any]]:
    """409: the entry was already requeued (existing_job_id names the job); 422: its job type, or
    the build of it the job asked for, no longer exists."""
    entry = _entry_or_404(entry_id)
    if no_engine_available():
        raise ServiceUnavailable("Docker circuit breaker is open; requeue once it has closed")
    by = caller(request).actor
    try:
        execution = services.dlq_requeue(entry=entry, by=by, correlation_id=request.correlation_id)  # type: ignore[attr-defined]
    except services.AlreadyRequeued as exc:
        raise ApiError(409, str(exc), existing_job_id=str(exc.entry.requeued_execution_id)) from None
    except services.QueueFull as exc:
        raise ServiceUnavailable(str(exc), retry_after=5) from None
    return Status(202, {"job_id": str(execution.pk), "status": execution.status, "entry_id": entry.pk})


@router.post(
    "/dlq/requeue",
    response={200: BulkRequeued, 422: Error, 503: Unavailable},
    summary="Requeue every entry matching a filter (error type, time range, ids), once each",
)
def dlq_requeue_matching(request: HttpRequest, payload: BulkRequeueRequest) -> dict[str, Any]:
    """503 (and nothing requeued) while no engine works; a queue that fills up midway stops it and
    the entries left are listed in `skipped`."""
    by = caller(request).actor
    done = services.dlq_requeue_matching(
        error_type=payload.error_type,
        created_after=payload.created_after,
        created_before=payload.created_before,
        ids=payload.ids,
        by=by,
        correlation_id=request.correlation_id,  # type: ignore[attr-defined]
    )
    return {
        "requeued": len(done.requeued),
        "jobs": [{"job_id": str(job.pk), "status": job.status, "entry_id": entry} for entry, job in done.requeued],
        "skipped": [{"entry_id": entry_id, "reason": reason} for entry_id, reason in done.skipped],
    }


@router.get(
    "/metrics",
    response={200: None},
    summary="Prometheus metrics (text format)",
    openapi_extra={"responses": {200: {"description": "text/plain; version=0.0.4", "content": {"text/plain": {}}}}},
)
def metrics(request: HttpRequest) -> HttpResponse:
    """Computed from the database at scrape time (so every process agrees)."""
    registry = CollectorRegistry()
    registry.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
