"""Endpoints for operators: /health, /health/ready, the dead letter queue, /metrics."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from executions import services
from executions.api.decorators import api_view
from executions.api.errors import ApiError, ServiceUnavailable
from executions.api.forms import paginated, parse_page
from executions.health import health_report, readiness_report
from executions.metrics import DatabaseCollector
from executions.models import DeadLetter
from executions.resilience import no_engine_available


@api_view("GET", scope=None)
def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse(health_report())


@api_view("GET", scope=None)
def ready(request: HttpRequest) -> JsonResponse:
    """For load balancers and the container's HEALTHCHECK: 200 only when this process can serve."""
    report = readiness_report()
    return JsonResponse(report, status=200 if report["ready"] else 503)


@api_view("GET", scope="admin")
def dlq_list(request: HttpRequest) -> JsonResponse:
    page = parse_page(request.GET)
    entries = DeadLetter.objects.all()
    if request.GET.get("error_type"):
        entries = entries.filter(error_type=request.GET["error_type"])
    return JsonResponse(paginated(entries, page, DeadLetter.to_dict))


@api_view("GET", scope="admin")
def dlq_stats(request: HttpRequest) -> JsonResponse:
    return JsonResponse(services.dlq_stats())


def _entry_or_404(entry_id: int) -> DeadLetter:
    entry = DeadLetter.objects.filter(pk=entry_id).first()
    if entry is None:
        raise ApiError(404, "DLQ entry not found")
    return entry


@api_view("DELETE", scope="admin")
def dlq_entry(request: HttpRequest, entry_id: int) -> JsonResponse:
    _entry_or_404(entry_id).delete()
    return JsonResponse({"status": "removed", "entry_id": entry_id})


@api_view("POST", scope="admin")
def dlq_requeue(request: HttpRequest, entry_id: int) -> JsonResponse:
    entry = _entry_or_404(entry_id)
    if no_engine_available():
        raise ServiceUnavailable("Docker circuit breaker is open; requeue once it has closed")
    user = request.principal.user  # type: ignore[attr-defined]
    by = user.get_username() if user is not None else f"api {request.META.get('REMOTE_ADDR')}"
    try:
        execution = services.dlq_requeue(entry=entry, by=by, correlation_id=request.correlation_id)  # type: ignore[attr-defined]
    except services.AlreadyRequeued as exc:
        raise ApiError(409, str(exc), existing_job_id=str(exc.entry.requeued_execution_id)) from None
    except services.QueueFull as exc:
        raise ServiceUnavailable(str(exc), retry_after=5) from None
    return JsonResponse({"job_id": str(execution.pk), "status": execution.status, "entry_id": entry.pk}, status=202)


@api_view("GET", scope="admin")
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, computed from the database at scrape time (so every process agrees)."""
    registry = CollectorRegistry()
    registry.register(DatabaseCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
