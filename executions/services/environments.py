"""Environments (job types): building their images and recording how that went."""

from __future__ import annotations

from django.utils import timezone

from executions.errors import BuildInProgress
from executions.models import Environment
from executions.sandbox import ContainerShape, SandboxError, SandboxUnavailable
from executions.sandbox.images import BuildResult, ImageBuildError, ensure_image


def environment_shape(environment: Environment, image_ref: str, *, wheels_dir: str | None = None) -> ContainerShape:
    """The container a job of this environment runs in (`image_ref` is name@sha256:…)."""
    return ContainerShape(
        image=environment.image,
        image_id=image_ref.partition("@")[2],
        memory_limit=environment.memory_limit,
        cpu_limit=environment.cpu_limit,
        network_enabled=environment.network_enabled,
        environment=tuple(sorted((str(k), str(v)) for k, v in environment.env_vars.items())),
        wheels_dir=wheels_dir,
    )


def environment_build(*, environment: Environment, force: bool = False) -> BuildResult:
    """Build (or confirm up to date) an environment's image, recording the outcome on it.

    Raises BuildInProgress when another build of it runs, ImageBuildError when the build fails
    (the previous image stays in use) and SandboxUnavailable when Docker cannot be reached.
    """
    claimed = (
        Environment.objects.filter(pk=environment.pk)
        .exclude(build_status=Environment.BuildStatus.BUILDING)
        .update(build_status=Environment.BuildStatus.BUILDING, build_started_at=timezone.now())
    )
    if not claimed:
        raise BuildInProgress(f"A build of '{environment.name}' is already running")
    try:
        result = ensure_image(environment.name, requirements=list(environment.requirements), force=force)
    except (ImageBuildError, SandboxUnavailable, SandboxError) as exc:
        Environment.objects.filter(pk=environment.pk).update(
            build_status=Environment.BuildStatus.FAILED, build_error=str(exc)[:4000]
        )
        raise
    except BaseException:
        Environment.objects.filter(pk=environment.pk).update(build_status=Environment.BuildStatus.FAILED)
        raise
    Environment.objects.filter(pk=environment.pk).update(
        build_status=Environment.BuildStatus.BUILT,
        build_error="",
        image_digest=result.digest,
        image_size_bytes=result.size_bytes,
        built_at=timezone.now() if result.built or environment.built_at is None else environment.built_at,
    )
    environment.refresh_from_db()
    return result


def environment_builds_reset() -> int:
    """At start-up: builds marked running belonged to a process that is gone."""
    return Environment.objects.filter(build_status=Environment.BuildStatus.BUILDING).update(
        build_status=Environment.BuildStatus.FAILED, build_error="Interrupted by a restart"
    )
