"""Environments (job types): building their images and recording how that went.

A build runs on a worker (the task `executions.tasks.build_environment`), never in the web
process: `environment_build_request` marks the environment queued and enqueues it. What the last
build recorded on the environment (status, image digest, size, error) is what pages and the API
show; they never ask Docker.
"""

from __future__ import annotations

import contextlib
import logging
import re

from django.utils import timezone
from django_q.tasks import async_task

from executions.errors import BuildInProgress, Conflict, InvalidRequest, ServiceUnavailable
from executions.models import VERSION_TAG_RE, Environment, EnvironmentVersion
from executions.sandbox import ContainerShape, SandboxError, SandboxUnavailable
from executions.sandbox.images import BuildResult, ImageBuildError, ensure_image, keep_version
from executions.services.audit import audit_record
from executions.services.preload import preload_modules


def environment_shape(
    environment: Environment,
    image_ref: str,
    *,
    wheels_dir: str | None = None,
    preload: tuple[str, ...] | None = None,
) -> ContainerShape:
    """The container a job of this environment runs in (`image_ref` is name@sha256:…). Its
    interpreter preloads `preload`, by default the environment's modules once checked on this image
    (a run with packages of its own gets none: what it installed might not match them)."""
    image_id = image_ref.partition("@")[2]
    if preload is None:
        preload = () if wheels_dir else preload_modules(environment, image_id)
    variables = {str(k): str(v) for k, v in environment.env_vars.items()}
    if preload:
        variables["TAKO_PRELOAD"] = ",".join(preload)  # (TAKO_ names are reserved: no clash)
    return ContainerShape(
        image=environment.image,
        image_id=image_id,
        memory_limit=environment.memory_limit,
        cpu_limit=environment.cpu_limit,
        network_enabled=environment.network_enabled,
        runtime=environment.effective_runtime,
        environment=tuple(sorted(variables.items())),
        wheels_dir=wheels_dir,
    )


logger = logging.getLogger(__name__)

BUILD_TASK = "executions.tasks.build_environment"


def environment_build_request(*, environment: Environment, by: str = "", tag: str | None = None) -> Environment:
    """Queue a build of the environment's image on a worker; returns the environment, queued.
    `tag` names the version the build records (else v1, v2, … in order).

    Raises BuildInProgress when a build of it is already queued or running, InvalidRequest for a
    malformed tag, Conflict for one already used, and ServiceUnavailable when the task queue
    cannot take it (the environment is marked failed).
    """
    if tag is not None:
        if not re.match(VERSION_TAG_RE, tag) or tag.startswith("sha256"):
            raise InvalidRequest({"version_tag": ["version_tag must be 1-64 letters, digits, . _ + - (not sha256…)"]})
        if environment.versions.filter(tag=tag).exists():
            raise Conflict(f"Version '{tag}' of job type '{environment.name}' already exists")
    queued = (
        Environment.objects.filter(pk=environment.pk)
        .exclude(build_status__in=Environment.BUILD_PENDING)
        .update(build_status=Environment.BuildStatus.QUEUED, build_started_at=None)
    )
    if not queued:
        environment.refresh_from_db(fields=["build_status"])
        state = "running" if environment.build_status == Environment.BuildStatus.BUILDING else "queued"
        raise BuildInProgress(f"A build of '{environment.name}' is already {state}")
    logger.info("Build of %s requested by %s", environment.name, by or "anonymous")
    audit_record("environment.build", actor=by or "anonymous", target=f"environment:{environment.name}")
    try:
        async_task(BUILD_TASK, environment.name, tag, task_name=f"build-{environment.name}")
    except Exception as exc:  # the broker is down: the environment must not stay "queued" forever
        logger.exception("Could not enqueue the build of %s", environment.name)
        Environment.objects.filter(pk=environment.pk, build_status=Environment.BuildStatus.QUEUED).update(
            build_status=Environment.BuildStatus.FAILED, build_error=f"The task queue is unavailable: {exc}"[:4000]
        )
        raise ServiceUnavailable(f"The task queue is unavailable: {exc}", retry_after=5) from None
    environment.refresh_from_db()
    return environment


def environment_build(*, environment: Environment, force: bool = False, tag: str | None = None) -> BuildResult:
    """Build (or confirm up to date) an environment's image here, recording the outcome on it
    (the worker's task and `manage.py tako_images build` call it; requests queue a build instead).

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
        _keep_latest_version(environment)  # a build moves :latest; the version before it stays runnable
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
    version = environment_version_record(environment, digest=result.digest, size_bytes=result.size_bytes, tag=tag)
    try:
        keep_version(environment.name, result.digest, version.tag)
    except SandboxError as exc:  # the version is recorded; its image is just not pinned by name
        logger.warning("Could not tag %s as version %s: %s", environment.name, version.tag, exc)
    return result


def environment_version_record(
    environment: Environment, *, digest: str, size_bytes: int | None = None, tag: str | None = None
) -> EnvironmentVersion:
    """The version a build of `environment` made: a new one for a new image (tagged `tag`, else the
    next v<n>), or for a new `tag`; a build that changed nothing and named no tag is the latest."""
    latest = environment.versions.first()
    if tag is None:
        if latest is not None and latest.digest == digest:
            return latest
        number = environment.versions.count() + 1
        while environment.versions.filter(tag=f"v{number}").exists():
            number += 1
        tag = f"v{number}"
    existing = environment.versions.filter(tag=tag).first()
    if existing is not None:  # (a tag is never moved to another image)
        return existing
    return EnvironmentVersion.objects.create(environment=environment, tag=tag, digest=digest, size_bytes=size_bytes)


def _keep_latest_version(environment: Environment) -> None:
    latest = environment.versions.first()
    if latest is None:
        return
    with contextlib.suppress(SandboxError):  # its image is gone already: nothing to keep
        keep_version(environment.name, latest.digest, latest.tag)


def environment_build_queued(*, name: str, tag: str | None = None) -> None:
    """A worker's part of a requested build: build it, the outcome recorded on the environment
    (a failure included, which is why nothing is raised for one)."""
    environment = Environment.objects.filter(name=name).first()
    if environment is None:  # deleted while queued
        return
    try:
        environment_build(environment=environment, tag=tag)
    except BuildInProgress:
        pass  # `tako_images build` took it meanwhile; that build records the outcome
    except (ImageBuildError, SandboxUnavailable, SandboxError) as exc:
        logger.warning("Build of %s failed: %s", name, exc)


def environment_builds_reset() -> int:
    """At start-up: builds marked running belonged to a process that is gone."""
    return Environment.objects.filter(build_status=Environment.BuildStatus.BUILDING).update(
        build_status=Environment.BuildStatus.FAILED, build_error="Interrupted by a restart"
    )
