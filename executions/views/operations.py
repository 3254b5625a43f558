"""The admins' operations page: breaker and queue, the dead letter queue, environments."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_htmx.http import trigger_client_event

from executions import services
from executions.errors import ApplicationError, BuildInProgress
from executions.health import health_report
from executions.models import DeadLetter, Environment
from executions.views.pages import PageRequest, page_login_required

DLQ_PAGE = 50


def staff_required(view: Callable) -> Callable:
    @page_login_required
    @wraps(view)
    def wrapper(request: PageRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied("Only admins can see the operations page.")
        return view(request, *args, **kwargs)

    return wrapper


def _toast(response: HttpResponse, message: str, level: str = "success") -> HttpResponse:
    return trigger_client_event(response, "showToast", {"message": message, "level": level})


def _dlq_context(request: PageRequest) -> dict[str, Any]:
    error_type = request.GET.get("error_type") or request.POST.get("error_type") or ""
    entries = DeadLetter.objects.select_related("execution")
    if error_type:
        entries = entries.filter(error_type=error_type)
    return {"entries": entries[:DLQ_PAGE], "dlq_stats": services.dlq_stats(), "error_type": error_type}


def _environments_context() -> dict[str, Any]:
    """What the last builds recorded (no Docker call: the page polls this while a build is pending)."""
    environments = list(Environment.objects.all())
    return {"environments": environments, "any_building": any(e.build_pending for e in environments)}


@staff_required
def operations(request: PageRequest) -> HttpResponse:
    panel = request.GET.get("panel") if request.htmx else None
    context: dict[str, Any] = {}
    if panel in (None, "status"):
        context["health"] = health_report()
        context["waiting_for_engine"] = services.jobs_waiting_for_engine()
        context["host_use"] = services.host_use()
        context["callers"] = services.caller_use()
        context["pool_memory"] = settings.TAKO_POOL_MEMORY
    if panel in (None, "dlq"):
        context.update(_dlq_context(request))
    if panel in (None, "environments"):
        context.update(_environments_context())
    partial = panel in ("status", "dlq", "environments")
    template = f"executions/operations.html#{panel}" if partial else "executions/operations.html"
    return render(request, template, context)


@staff_required
def dlq_entry(request: PageRequest, entry_id: int) -> HttpResponse:
    entry = get_object_or_404(DeadLetter.objects.select_related("execution"), pk=entry_id)
    return render(request, "executions/operations.html#entry", {"entry": entry})


@staff_required
@require_POST
def dlq_action(request: PageRequest, action: str) -> HttpResponse:
    """Requeue or delete the selected entries (one, from its row, or a checked selection)."""
    if action == "requeue-matching":
        return _requeue_matching(request)
    if action not in ("requeue", "delete"):
        raise Http404("No such action")
    ids = [int(i) for i in request.POST.getlist("ids") if i.isdigit()]
    entries = list(DeadLetter.objects.filter(pk__in=ids))
    done, problems = 0, []
    for entry in entries:
        if action == "delete":
            services.dlq_delete(entry, by=request.user.get_username())
            done += 1
            continue
        try:
            services.dlq_requeue(entry=entry, by=request.user.get_username(), correlation_id=request.correlation_id)
            done += 1
        except ApplicationError as exc:  # already requeued, breaker open, queue full…
            problems.append(str(exc))
    response = render(request, "executions/operations.html#dlq", _dlq_context(request))
    verb = "Deleted" if action == "delete" else "Requeued"
    if problems:
        return _toast(response, f"{verb} {done}; {len(problems)} not: {problems[0]}", "error")
    if not entries:
        return _toast(response, "Select at least one entry first.", "error")
    return _toast(response, f"{verb} {done} entr{'y' if done == 1 else 'ies'}.")


def _requeue_matching(request: PageRequest) -> HttpResponse:
    """Requeue every entry not yet requeued of the error type shown (all types when none is)."""
    error_type = request.POST.get("error_type") or None
    try:
        done = services.dlq_requeue_matching(
            error_type=error_type,
            created_before=timezone.now(),  # what is listed now, not what fails while requeueing
            by=request.user.get_username(),
            correlation_id=request.correlation_id,
        )
    except ApplicationError as exc:
        return _toast(render(request, "executions/operations.html#dlq", _dlq_context(request)), str(exc), "error")
    response = render(request, "executions/operations.html#dlq", _dlq_context(request))
    message = f"Requeued {len(done.requeued)} entr{'y' if len(done.requeued) == 1 else 'ies'}."
    if done.skipped:
        return _toast(response, f"{message} {len(done.skipped)} not: {done.skipped[0][1]}", "error")
    return _toast(response, message)


@staff_required
@require_POST
def environment_build(request: PageRequest, name: str) -> HttpResponse:
    """Queue a build on a worker (as POST /job-types/{name}/build does); the panel polls until it ends."""
    environment = get_object_or_404(Environment, name=name)
    try:
        services.environment_build_request(environment=environment, by=request.user.get_username())
    except BuildInProgress as exc:
        message, level = str(exc), "info"
    except ApplicationError as exc:  # the task queue is unavailable
        message, level = str(exc), "error"
    else:
        message, level = f"Building the image of {name}…", "info"
    response = render(request, "executions/operations.html#environments", _environments_context())
    return _toast(response, message, level)


AUDIT_PAGE_SIZE = 50


@staff_required
def audit(request: PageRequest) -> HttpResponse:
    """The audit log, newest first, filtered by action (or its family) and actor."""
    action = request.GET.get("action", "").strip()[:64]
    actor = request.GET.get("actor", "").strip()[:150]
    page = max(int(request.GET["page"]), 1) if request.GET.get("page", "").isdigit() else 1
    events = services.audit_events(action=action or None, actor=actor or None)
    start = (page - 1) * AUDIT_PAGE_SIZE
    rows = list(events[start : start + AUDIT_PAGE_SIZE + 1])
    query = urlencode({k: v for k, v in (("action", action), ("actor", actor)) if v})
    context = {
        "events": rows[:AUDIT_PAGE_SIZE],
        "action": action,
        "actor": actor,
        "page": page,
        "has_more": len(rows) > AUDIT_PAGE_SIZE,
        "query": query,
        "families": ["dlq", "environment", "apikey", "admin", "login"],
    }
    return render(request, "executions/audit.html", context)
