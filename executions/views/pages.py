"""The analysts' pages: new execution, executions list, execution page (htmx + a websocket)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, trigger_client_event
from django_htmx.middleware import HtmxDetails

from executions import services
from executions.errors import AlreadyEnded, ApplicationError
from executions.hints import HINTS
from executions.models import Batch, Environment, Execution
from executions.selectors import (
    batch_progress,
    batches_visible_to,
    executions_visible_to,
    sees_every_execution,
    webhook_attempts_of,
    webhook_of,
)
from executions.services.limits import rate_key
from executions.services.webhooks import PENDING as WEBHOOK_PENDING
from executions.views.forms import ExecutionFilterForm, ExecutionForm
from executions.views.outputs import artifacts_zip

PAGE_SIZE = 50


class PageRequest(HttpRequest):
    """A request as the pages see it: django-htmx's details, a logged-in user."""

    htmx: HtmxDetails
    correlation_id: str


def page_login_required(view: Callable) -> Callable:
    """Like login_required, but an htmx request from an expired session is sent to the login page."""

    @wraps(view)
    def wrapper(request: PageRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            if request.htmx:
                return HttpResponseClientRedirect(f"{reverse('login')}?expired=1")
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper


def _submitter(request: PageRequest) -> services.Submitter:
    """The logged-in user; a page's submission counts against the same rate limit as their API calls."""
    client_ip = request.META.get("REMOTE_ADDR")
    return services.Submitter(
        user=request.user,
        client_ip=client_ip,
        correlation_id=request.correlation_id,
        rate_key=rate_key(user=request.user, client_ip=client_ip),
    )


def _visible_or_404(visible: Any, pk: Any, noun: str) -> Any:
    """The row `pk` among those the user may see; 403 if it is someone else's, 404 if none is."""
    found = visible.filter(pk=pk).select_related("submitted_by").first()
    if found is None:
        if visible.model.objects.filter(pk=pk).exists():
            raise PermissionDenied(f"This {noun} belongs to another user.")
        raise Http404(f"There is no such {noun}.")
    return found


def _execution_or_404(request: PageRequest, execution_id: Any) -> Execution:
    return _visible_or_404(executions_visible_to(request.user), execution_id, "execution")


# -- new execution ---------------------------------------------------------------------------------
@page_login_required
@require_http_methods(["GET", "POST"])
def execution_new(request: PageRequest, fork_of: Any = None) -> HttpResponse:
    parent = _execution_or_404(request, fork_of) if fork_of else None
    if request.method == "GET":
        initial = ExecutionForm.initial_for(parent) if parent else {"job_type": "default", "input_data": "{}"}
        return _form_page(request, ExecutionForm(initial=initial), parent)

    form = ExecutionForm(request.POST, request.FILES)
    if not form.is_valid():
        return _form_page(request, form, parent)
    job = form.cleaned_data["request"]
    if parent is not None and not job.files:  # a fork keeps its parent's files unless others are sent
        job = replace(job, files=tuple(services.input_files_of(parent)))
    # A second click on Run sends the same token: the same job, never a second run.
    key = f"ui-{request.user.pk}-{form.cleaned_data['submit_token']}"[:255]
    try:
        admitted = services.execution_submit(
            replace(job, idempotency_key=key),
            submitter=_submitter(request),
            parent=parent,
            relationship="fork" if parent else None,
        )
    except ApplicationError as exc:  # over the quota, the queue full, the engine down…: above the form
        form.add_error(None, str(exc))
        return _form_page(request, form, parent)
    url = reverse("ui-execution", args=[admitted.execution.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _form_page(request: PageRequest, form: ExecutionForm, parent: Execution | None) -> HttpResponse:
    """The page, or (to an htmx post) the form alone, with its errors and what was typed."""
    context = {
        "form": form,
        "parent": parent,
        "environments": Environment.objects.all(),
        "submit_token": form["submit_token"].value() or uuid.uuid4().hex,
        "parent_files": parent.input_files.all() if parent else [],
        "file_limits": {
            "count": settings.TAKO_MAX_INPUT_FILES,
            "each": settings.TAKO_MAX_INPUT_FILE_BYTES,
            "total": settings.TAKO_MAX_INPUT_FILES_BYTES,
        },
        "requirements_allowed": settings.TAKO_ALLOW_REQUIREMENTS,
    }
    template = "executions/new.html#form" if request.htmx and form.is_bound else "executions/new.html"
    return render(request, template, context)


# -- list ------------------------------------------------------------------------------------------
@page_login_required
def execution_list(request: PageRequest) -> HttpResponse:
    executions = (
        executions_visible_to(request.user)
        .select_related("submitted_by")
        .defer("code", "input_data", "stdout", "stderr", "output", "resource_usage", "attempts")
    )
    form = ExecutionFilterForm(request.GET)
    filters = form.applied()
    if filters.get("status") in Execution.Status.values:
        executions = executions.filter(status=filters["status"])
    if "job_type" in filters:
        executions = executions.filter(job_type=filters["job_type"])
    sees_all = sees_every_execution(request.user)
    if "user" in filters and sees_all:
        executions = executions.filter(submitted_by__username=filters["user"])
    if "q" in filters:
        executions = executions.filter(code__contains=filters["q"])
    if "since" in filters:
        executions = executions.filter(created_at__gte=_day_start(filters["since"]))
    if "until" in filters:  # the whole day named
        executions = executions.filter(created_at__lt=_day_start(filters["until"]) + timedelta(days=1))
    page = Paginator(executions, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "form": form,
        "filters": {name: str(value) for name, value in filters.items()},
        "statuses": Execution.Status.values,
        "environments": Environment.objects.values_list("name", flat=True),
        "users": get_user_model().objects.order_by("username").values_list("username", flat=True) if sees_all else [],
        "query": urlencode({name: str(value) for name, value in filters.items()}),
        # The rows refresh every 2 s only while one of them can still change.
        "live": any(e.status in (Execution.Status.QUEUED, Execution.Status.RUNNING) for e in page.object_list),
    }
    template = "executions/list.html#rows" if request.htmx else "executions/list.html"
    return render(request, template, context)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# -- one execution ---------------------------------------------------------------------------------
@page_login_required
def execution_detail(request: PageRequest, execution_id: Any) -> HttpResponse:
    execution = _execution_or_404(request, execution_id)
    context = {
        "execution": execution,
        "hints": HINTS,
        "input_files": execution.input_files.all(),
        **_webhook_context(execution),
    }
    if request.htmx and request.GET.get("panel") == "webhooks":
        return render(request, "executions/detail.html#webhooks", context)
    return render(request, "executions/detail.html", context)


def _webhook_context(execution: Execution) -> dict[str, Any]:
    """The job's webhook and its attempts (no query for a job without one); the panel polls
    while a delivery is still to come."""
    webhook = webhook_of(execution)
    if webhook is None:
        return {"webhook": None}
    return {
        "webhook": webhook,
        "webhook_attempts": list(webhook_attempts_of(execution)),
        "webhook_pending": webhook.state in WEBHOOK_PENDING,
    }


# -- batches ---------------------------------------------------------------------------------------
def _batch_or_404(request: PageRequest, batch_id: Any) -> Batch:
    return _visible_or_404(batches_visible_to(request.user), batch_id, "batch")


@page_login_required
def batch_detail(request: PageRequest, batch_id: Any) -> HttpResponse:
    """A batch's progress bar and its jobs; the panel polls until every job has ended."""
    batch = _batch_or_404(request, batch_id)
    context = {"batch": batch, "progress": batch_progress(batch)}
    if request.htmx and request.GET.get("panel") == "progress":
        return render(request, "executions/batch.html#progress", context)
    return render(request, "executions/batch.html", context)


@page_login_required
@require_POST
def batch_cancel(request: PageRequest, batch_id: Any) -> HttpResponse:
    cancelled = services.batch_cancel(_batch_or_404(request, batch_id))
    response = HttpResponse(status=204)
    message = f"Cancelling {cancelled} job{'s' if cancelled != 1 else ''}…" if cancelled else "Every job had ended."
    trigger_client_event(response, "showToast", {"message": message, "level": "info"})
    return response


@page_login_required
def execution_artifacts_zip(request: PageRequest, execution_id: Any) -> FileResponse:
    """Every artifact of the execution, as one zip ("download all")."""
    execution = _execution_or_404(request, execution_id)
    name = f"execution-{str(execution.pk)[:8]}-artifacts.zip"
    return FileResponse(artifacts_zip(execution), as_attachment=True, filename=name, content_type="application/zip")


@page_login_required
@require_POST
def execution_cancel(request: PageRequest, execution_id: Any) -> HttpResponse:
    execution = _execution_or_404(request, execution_id)
    response = HttpResponse(status=204)
    try:
        services.execution_cancel(execution)
        trigger_client_event(response, "showToast", {"message": "Cancelling the job…", "level": "info"})
    except AlreadyEnded as exc:
        trigger_client_event(response, "showToast", {"message": str(exc), "level": "error"})
    return response


@page_login_required
@require_POST
def execution_rerun(request: PageRequest, execution_id: Any) -> HttpResponse:
    execution = _execution_or_404(request, execution_id)
    try:
        admitted = services.execution_derive(execution, relationship="rerun", submitter=_submitter(request))
    except ApplicationError as exc:
        return trigger_client_event(HttpResponse(status=204), "showToast", {"message": str(exc), "level": "error"})
    return HttpResponseClientRedirect(reverse("ui-execution", args=[admitted.execution.pk]))
