"""Job types (environments): list, one, and asking a worker to build one's image.

What is read here is the stored state the last build recorded; no request asks Docker, so these
answer on a web-only host (TAKO_WEB_USES_DOCKER=0) and while the engine is away."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.responses import Status

from executions import services
from executions.api.auth import ADMIN, EXECUTE, caller
from executions.api.errors import ApiError
from executions.api.routing import Router
from executions.api.schemas import Error, JobType, Unavailable
from executions.models import Environment
from executions.resilience import runtime_available

router = Router(auth=EXECUTE, tags=["job types"])


def _environment(name: str) -> Environment:
    environment = Environment.objects.filter(name=name).first()
    if environment is None:
        raise ApiError(404, f"Job type '{name}' not found")
    return environment


def _shown(environment: Environment) -> dict[str, Any]:
    """The job type, with whether a live engine has its runtime (as the worker hosts reported)."""
    return {**environment.to_dict(), "runtime_available": runtime_available(environment.effective_runtime)}


@router.get("/job-types", response=list[JobType], summary="List job types (environments)")
def job_type_list(request: HttpRequest) -> list[dict[str, Any]]:
    return [_shown(environment) for environment in Environment.objects.all()]


@router.get("/job-types/{str:name}", response={200: JobType, 404: Error}, summary="One job type")
def job_type_detail(request: HttpRequest, name: str) -> dict[str, Any]:
    """With `versions`: every build recorded, newest first (`job_type: "name@<tag>"` selects one)."""
    environment = _environment(name)
    return {**_shown(environment), "versions": [version.to_dict() for version in environment.versions.all()]}


@router.post(
    "/job-types/{str:name}/build",
    auth=ADMIN,
    response={202: JobType, 404: Error, 409: Error, 422: Error, 503: Unavailable},
    summary="Queue a build of the job type's image (a worker builds it; no-op when up to date)",
)
def job_type_build(request: HttpRequest, name: str, version_tag: str | None = None) -> Status[dict[str, Any]]:
    """202: queued (`build_status` "queued"); poll GET /job-types/{name} until `build_status` is
    "built", or "failed" with `build_error` naming the package (the previous image stays in use).
    The build records a version: `version_tag` (as Tako VM's), else v1, v2, … for each new image.
    409: a build of this job type is already queued or running, or the tag is taken."""
    environment = _environment(name)
    by = caller(request).actor
    environment = services.environment_build_request(environment=environment, by=by, tag=version_tag)
    return Status(202, environment.to_dict())
