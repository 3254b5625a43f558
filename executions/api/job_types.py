"""Job types (environments): list, one, and building one's image."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from executions import services
from executions.api.auth import ADMIN, EXECUTE
from executions.api.errors import ApiError
from executions.api.routing import Router, in_worker_thread
from executions.api.schemas import BuildResult, Error, JobType, Unavailable
from executions.errors import EngineUnavailable
from executions.models import Environment
from executions.sandbox import SandboxError, SandboxUnavailable, get_sandbox
from executions.sandbox.images import ImageBuildError

router = Router(auth=EXECUTE, tags=["job types"])


def _image_exists(environment: Environment) -> bool:
    try:
        return get_sandbox().image_ref(environment.image) is not None
    except (SandboxUnavailable, SandboxError):
        return False


@router.get("/job-types", response=list[JobType], summary="List job types (environments)")
def job_type_list(request: HttpRequest) -> list[dict[str, Any]]:
    return [env.to_dict(image_exists=_image_exists(env)) for env in Environment.objects.all()]


@router.get("/job-types/{str:name}", response={200: JobType, 404: Error}, summary="One job type")
def job_type_detail(request: HttpRequest, name: str) -> dict[str, Any]:
    environment = Environment.objects.filter(name=name).first()
    if environment is None:
        raise ApiError(404, f"Job type '{name}' not found")
    return environment.to_dict(image_exists=_image_exists(environment))


@router.post(
    "/job-types/{str:name}/build",
    auth=ADMIN,
    response={200: BuildResult, 404: Error, 409: Error, 422: Error, 503: Unavailable},
    summary="Build the job type's image (no-op when up to date)",
)
async def job_type_build(request: HttpRequest, name: str) -> dict[str, Any]:
    """Answers when the image is built and up to date. 409: a build of this job type is already
    running; 422: the build failed (which package, and why), the previous image stays in use."""
    environment = await Environment.objects.filter(name=name).afirst()
    if environment is None:
        raise ApiError(404, f"Job type '{name}' not found")
    try:
        result = await in_worker_thread(services.environment_build, environment=environment)
    except ImageBuildError as exc:
        raise ApiError(422, f"Build failed: {exc}") from None
    except SandboxUnavailable as exc:
        raise EngineUnavailable(f"Docker is unavailable: {exc}") from None
    short = result.digest.removeprefix("sha256:")[:12]
    return {
        "status": "built",
        "job_type": name,
        "version": f"{name}@{short}",
        "digest": result.digest,
        "image_ref": result.image,
        "rebuilt": result.built,
        "seconds": round(result.seconds, 2),
        "size_bytes": result.size_bytes,
    }
