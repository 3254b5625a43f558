"""The JSON API, wire-compatible with Tako VM (docs/API.md). Plain function views."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, JsonResponse

from executions import services
from executions.api.decorators import api_view, parse_json_body, submitter
from executions.api.errors import ApiError
from executions.api.forms import paginated, parse_page, parse_status, parse_view
from executions.api.openapi import openapi_document
from executions.errors import EngineUnavailable
from executions.models import Environment
from executions.sandbox import SandboxError, SandboxUnavailable, get_sandbox
from executions.sandbox.images import ImageBuildError

T = TypeVar("T")


async def _in_worker_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run blocking work (a container run) off the event loop and off Django's one sync thread."""

    def call() -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()  # this thread's own connections

    return await asyncio.to_thread(call)


SYNC_POLL_SECONDS = 0.02


@api_view("POST")
async def execute(request: HttpRequest) -> JsonResponse:
    """Run code now and answer when it has ended (Tako VM's sync endpoint)."""
    job = await sync_to_async(services.execute_request_parse)(parse_json_body(request))
    admitted = await sync_to_async(services.execution_submit_sync)(job, submitter=submitter(request))
    execution = admitted.execution
    if admitted.created and settings.TAKO_WEB_USES_DOCKER:
        # Runs here (not on the cluster) but within the same worker budget: it waits for a free slot.
        execution = await _in_worker_thread(services.execution_run, execution_id=execution.pk, role="web")
    else:  # a worker runs it (a web-only machine), or it is a retry of a run: answer when it has ended
        if admitted.created:
            await sync_to_async(services.execution_dispatch)(execution)
        while not execution.is_terminal:
            await asyncio.sleep(SYNC_POLL_SECONDS)
            await execution.arefresh_from_db()
    return JsonResponse(execution.to_sync_response())


@api_view("GET")
def execution_list(request: HttpRequest) -> JsonResponse:
    page = parse_page(request.GET)
    full = parse_view(request.GET)
    records = request.principal.executions()  # type: ignore[attr-defined]
    status = parse_status(request.GET)
    if status:
        records = records.filter(status=status)
    if request.GET.get("job_type"):
        records = records.filter(job_type=request.GET["job_type"])
    if full:
        records = records.prefetch_related("artifacts")
    return JsonResponse(paginated(records, page, lambda row: row.to_dict(full=full)))


@api_view("GET")
def execution_detail(request: HttpRequest, execution_id: str) -> JsonResponse:
    full = parse_view(request.GET)
    execution = request.principal.executions().filter(pk=execution_id).first()  # type: ignore[attr-defined]
    if execution is None:
        raise ApiError(404, "Execution not found")
    return JsonResponse(execution.to_dict(full=full))


def _image_exists(environment: Environment) -> bool:
    try:
        return get_sandbox().image_ref(environment.image) is not None
    except (SandboxUnavailable, SandboxError):
        return False


@api_view("GET")
def job_type_list(request: HttpRequest) -> JsonResponse:
    items = [env.to_dict(image_exists=_image_exists(env)) for env in Environment.objects.all()]
    return JsonResponse(items, safe=False)


@api_view("GET")
def job_type_detail(request: HttpRequest, name: str) -> JsonResponse:
    environment = Environment.objects.filter(name=name).first()
    if environment is None:
        raise ApiError(404, f"Job type '{name}' not found")
    return JsonResponse(environment.to_dict(image_exists=_image_exists(environment)))


@api_view("GET", scope=None)
def openapi_json(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi_document())


@api_view("POST", scope="admin")
async def job_type_build(request: HttpRequest, name: str) -> JsonResponse:
    """Build the job type's image now (a no-op when it is up to date); answers when done."""
    environment = await Environment.objects.filter(name=name).afirst()
    if environment is None:
        raise ApiError(404, f"Job type '{name}' not found")
    try:
        result = await _in_worker_thread(services.environment_build, environment=environment)
    except ImageBuildError as exc:
        raise ApiError(422, f"Build failed: {exc}") from None
    except SandboxUnavailable as exc:
        raise EngineUnavailable(f"Docker is unavailable: {exc}") from None
    short = result.digest.removeprefix("sha256:")[:12]
    return JsonResponse(
        {
            "status": "built",
            "job_type": name,
            "version": f"{name}@{short}",
            "digest": result.digest,
            "image_ref": result.image,
            "rebuilt": result.built,
            "seconds": round(result.seconds, 2),
            "size_bytes": result.size_bytes,
        }
    )
