"""What the service does, independent of HTTP: create executions, run them, record the outcome."""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from executions.logging import correlation_context
from executions.models import Artifact, Environment, Execution
from executions.sandbox import RunResult, RunSpec, Sandbox, SandboxError, SandboxUnavailable, get_sandbox
from executions.sandbox.classify import Outcome, classify_exit, failure

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
            result = (sandbox or get_sandbox()).run(_run_spec(execution))
            outcome = _outcome_of(result, execution)
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


def _run_spec(execution: Execution) -> RunSpec:
    try:
        environment = Environment.objects.get(name=execution.job_type)
    except Environment.DoesNotExist:
        raise Environment.DoesNotExist(f"Job type '{execution.job_type}' no longer exists") from None
    return RunSpec(
        execution_id=str(execution.pk),
        image=environment.image,
        code=execution.code,
        input_json=json.dumps(execution.input_data),
        timeout=execution.timeout,
        memory_limit=environment.memory_limit,
        cpu_limit=environment.cpu_limit,
        network_enabled=environment.network_enabled,
        environment={str(k): str(v) for k, v in environment.env_vars.items()},
    )


def _outcome_of(result: RunResult, execution: Execution) -> Outcome:
    outcome = classify_exit(
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        oom_killed=result.oom_killed,
        exception=result.exception,
        timeout=execution.timeout,
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
