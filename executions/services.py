"""What the service does, independent of HTTP: create executions, run them, record the outcome."""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from executions.logging import correlation_context
from executions.models import Artifact, Environment, Execution
from executions.sandbox import RunResult, RunSpec, Sandbox, SandboxError, SandboxUnavailable, get_sandbox
from executions.sandbox.classify import Outcome, classify_exit, failure
from executions.sandbox.images import BuildResult, ImageBuildError, ensure_image
from executions.sandbox.packages import PackageError, wheel_set

logger = logging.getLogger(__name__)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def execution_create(
    *,
    code: str,
    input_data: dict[str, Any],
    environment: Environment,
    timeout: int | None = None,
    startup_timeout: int | None = None,
    requirements: list[str] | None = None,
    correlation_id: str = "",
    client_ip: str | None = None,
    idempotency_key: str | None = None,
    parent: Execution | None = None,
    relationship: str | None = None,
) -> Execution:
    return Execution.objects.create(
        job_type=environment.name,
        code=code,
        input_data=input_data,
        timeout=timeout or environment.timeout,
        startup_timeout=startup_timeout or environment.startup_timeout,
        requirements=requirements or [],
        code_hash=sha256_hex(code),
        input_hash=sha256_hex(canonical_json(input_data)),
        correlation_id=correlation_id,
        client_ip=client_ip,
        idempotency_key=idempotency_key,
        parent_execution=parent,
        relationship=relationship,
    )


def execution_run(*, execution_id: Any, sandbox: Sandbox | None = None) -> Execution:
    """Claim a queued execution, run it in the sandbox and store how it ended.

    Never raises for a fault of the sandbox: the record then ends failed with
    `service_unavailable` (the engine is unreachable) or `internal_error`. If another process
    already claimed the execution, it is returned as it is.
    """
    execution = Execution.objects.get(pk=execution_id)
    with correlation_context(execution.correlation_id):
        claimed = Execution.objects.filter(pk=execution.pk, status=Execution.Status.QUEUED).update(
            status=Execution.Status.RUNNING, started_at=timezone.now()
        )
        if not claimed:
            logger.info("Execution %s was already claimed", execution.pk)
            return Execution.objects.get(pk=execution.pk)
        execution.refresh_from_db()
        logger.info("Running execution %s on %s", execution.pk, execution.job_type)
        outcome: Outcome = failure("internal_error", "Internal error while running the job", phase="startup")
        result: RunResult | None = None
        try:
            sandbox = sandbox or get_sandbox()
            spec = _run_spec(execution, sandbox)
            result = sandbox.run(spec)
            outcome = _outcome_of(result, execution)
        except PackageError as exc:
            outcome = failure("dependency_error", str(exc), phase="startup")
        except StartupTimeout as exc:
            outcome = failure("timeout", str(exc), phase="startup")
        except SandboxUnavailable as exc:
            outcome = failure("service_unavailable", f"Docker is unavailable: {exc}", phase="startup")
        except (SandboxError, Environment.DoesNotExist) as exc:
            outcome = failure("internal_error", str(exc), phase="startup")
        except Exception:
            logger.exception("Execution %s failed inside the service", execution.pk)
        finally:
            _record_end(execution, outcome, result)
        logger.info("Execution %s ended %s (%s)", execution.pk, execution.status, execution.error_type or "ok")
        return execution


class StartupTimeout(Exception):
    """The startup phase (image, packages, container start) used up `startup_timeout`."""


def _run_spec(execution: Execution, sandbox: Sandbox) -> RunSpec:
    began = time.monotonic()
    try:
        environment = Environment.objects.get(name=execution.job_type)
    except Environment.DoesNotExist:
        raise Environment.DoesNotExist(f"Job type '{execution.job_type}' no longer exists") from None
    _wait_for_image(environment, sandbox, deadline=began + execution.startup_timeout)
    wheels_dir = None
    if execution.requirements:
        wheels_dir = str(wheel_set(execution.requirements, timeout=max(execution.startup_timeout - 1, 1)))
    return RunSpec(
        execution_id=str(execution.pk),
        image=environment.image,
        code=execution.code,
        input_json=json.dumps(execution.input_data),
        timeout=execution.timeout,
        startup_timeout=max(execution.startup_timeout - (time.monotonic() - began), 0),
        memory_limit=environment.memory_limit,
        cpu_limit=environment.cpu_limit,
        network_enabled=environment.network_enabled,
        environment={str(k): str(v) for k, v in environment.env_vars.items()},
        wheels_dir=wheels_dir,
    )


def _wait_for_image(environment: Environment, sandbox: Sandbox, *, deadline: float) -> None:
    """A job on an environment whose image is being built waits for the build (within startup)."""
    while sandbox.image_ref(environment.image) is None:
        environment.refresh_from_db(fields=["build_status", "build_error"])
        if environment.build_status != Environment.BuildStatus.BUILDING:
            reason = f" (the last build failed: {environment.build_error})" if environment.build_error else ""
            raise SandboxError(
                f"The image of job type '{environment.name}' is not built{reason}; an admin can build it with "
                f"POST /job-types/{environment.name}/build or manage.py tako_images build {environment.name}"
            )
        if time.monotonic() > deadline:
            raise StartupTimeout(
                f"The image of job type '{environment.name}' was still being built when startup_timeout passed"
            )
        time.sleep(1)


def _outcome_of(result: RunResult, execution: Execution) -> Outcome:
    outcome = classify_exit(
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        oom_killed=result.oom_killed,
        exception=result.exception,
        timeout=execution.timeout,
        startup_timed_out=result.startup_timed_out,
        startup_timeout=execution.startup_timeout,
        dependency_error=result.dependency_error,
    )
    if result.result_json is not None:
        try:
            execution.output = json.loads(result.result_json)
        except ValueError as exc:
            if outcome.success:
                outcome = failure("json_error", f"Invalid JSON in /output/result.json: {exc}", phase="output")
    return outcome


def _record_end(execution: Execution, outcome: Outcome, result: RunResult | None) -> None:
    execution.status = outcome.status
    execution.error_type = outcome.error_type
    execution.error_message = outcome.message
    execution.error_phase = outcome.phase
    execution.ended_at = timezone.now()
    execution.total_ms = int((execution.ended_at - execution.created_at).total_seconds() * 1000)
    if result is not None:
        execution.exit_code = result.exit_code
        execution.stdout, execution.stderr = result.stdout, result.stderr
        execution.stdout_truncated, execution.stderr_truncated = (
            result.stdout_truncated,
            result.stderr_truncated,
        )
        execution.startup_ms, execution.execution_ms = result.startup_ms, result.execution_ms
        execution.dep_install_ms = result.dep_install_ms
        execution.resource_usage = result.resource_usage or None
        execution.job_ref, execution.runtime = result.image_ref, result.runtime
    with transaction.atomic():
        execution.save()
        if result is not None:
            _store_artifacts(execution, result)


def _store_artifacts(execution: Execution, result: RunResult) -> None:
    if not result.artifacts:
        return
    folder = Path(settings.DATA_DIR) / "artifacts" / str(execution.pk)
    folder.mkdir(parents=True, exist_ok=True)
    for artifact in result.artifacts:
        path = folder / artifact.name
        path.write_bytes(artifact.data)
        Artifact.objects.create(
            execution=execution,
            name=artifact.name,
            size_bytes=len(artifact.data),
            sha256=hashlib.sha256(artifact.data).hexdigest(),
            content_type=mimetypes.guess_type(artifact.name)[0] or "application/octet-stream",
            path=str(path),
        )


class BuildInProgress(Exception):
    """Another build of the same environment is running."""


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
