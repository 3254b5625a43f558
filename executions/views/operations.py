"""The admins' operations page: breaker and queue, the dead letter queue, environments."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import connections
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_POST
from django_htmx.http import trigger_client_event

from executions import services
from executions.errors import ApplicationError, BuildInProgress
from executions.health import health_report
from executions.models import DeadLetter, Environment
from executions.sandbox import SandboxError, SandboxUnavailable, get_sandbox
from executions.sandbox.images import ImageBuildError
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


def _environments_context(building: str = "") -> dict[str, Any]:
    environments = list(Environment.objects.all())
    sandbox = get_sandbox()
    for environment in environments:  # the engine's word on the image, not only our records
        try:
            environment.image_ref = sandbox.image_ref(environment.image)  # type: ignore[attr-defined]
        except (SandboxUnavailable, SandboxError):
            environment.image_ref = "unknown"  # type: ignore[attr-defined]
    any_building = bool(building) or any(e.build_status == Environment.BuildStatus.BUILDING for e in environments)
    return {"environments": environments, "building": building, "any_building": any_building}


@staff_required
def operations(request: PageRequest) -> HttpResponse:
    panel = request.GET.get("panel") if request.htmx else None
    context: dict[str, Any] = {}
    if panel in (None, "status"):
        context["health"] = health_report()
        context["waiting_for_engine"] = services.jobs_waiting_for_engine()
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
            entry.delete()
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


def _build_in_background(environment: Environment) -> None:
    try:
        services.environment_build(environment=environment)
    except (ImageBuildError, SandboxUnavailable, SandboxError, BuildInProgress):
        pass  # recorded on the environment (build_status, build_error) and shown on the page
    finally:
        connections.close_all()


@staff_required
@require_POST
def environment_build(request: PageRequest, name: str) -> HttpResponse:
    environment = get_object_or_404(Environment, name=name)
    already = environment.build_status == Environment.BuildStatus.BUILDING
    if not already:
        threading.Thread(target=_build_in_background, args=(environment,), daemon=True).start()
    response = render(request, "executions/operations.html#environments", _environments_context(building=name))
    return _toast(response, f"{name} is already being built" if already else f"Building the image of {name}…", "info")
