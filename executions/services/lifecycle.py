"""How a job moves: claimed (queued → running), requeued (running → queued), ended (→ a terminal status).

The only code that writes an execution's status. Each move is a conditional update
(`filter(pk=…, status__in=…).update(…)`) and acts only when it changed the row, so two enders
racing (a run finishing as the recovery sweep gives up on it, a cancel as the queue fails) end a
job once: the first one wins, the other is a no-op. Every move tells the job's open pages.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mimetypes
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Func, IntegerField, QuerySet, Subquery, Value
from django.db.models.lookups import LessThan
from django.utils import timezone

from executions import live
from executions.models import Artifact, Execution, Lock
from executions.sandbox import RunResult
from executions.sandbox.classify import Outcome
from executions.services.dlq import DEAD_LETTER_TYPES, dead_letter_add
from executions.services.pool import pool_count

logger = logging.getLogger(__name__)

CLAIM_POLL_SECONDS = 0.05
ACTIVE = (Execution.Status.QUEUED, Execution.Status.RUNNING)


def claim(execution: Execution, *, worker: str) -> bool:
    """Move the execution from queued to running once fewer than TAKO_MAX_WORKERS run; waits for
    a free slot. False when it was claimed elsewhere or ended (cancelled) while it waited. When
    claimed, `execution` holds the new status, start and worker (nothing else changed)."""
    while True:
        now = timezone.now()
        moved = {"status": Execution.Status.RUNNING, "started_at": now, "heartbeat_at": now, "worker": worker}
        if connection.features.has_select_for_update:
            with transaction.atomic():
                # One claimer at a time: a row lock, then the budget counted and the claim in one update.
                Lock.objects.select_for_update().get_or_create(name="worker-budget")
                claimed = _within_budget(execution).update(**moved)
        else:  # SQLite: one UPDATE takes the write lock before it counts, so claimers are serialised
            claimed = _within_budget(execution).update(**moved)
        if claimed:
            break
        if not Execution.objects.filter(pk=execution.pk, status=Execution.Status.QUEUED).exists():
            return False
        time.sleep(CLAIM_POLL_SECONDS)
    for field, value in moved.items():
        setattr(execution, field, value)
    live.notify_execution_changed(execution.pk)
    return True


def _within_budget(execution: Execution) -> QuerySet[Execution]:
    """The execution, if still queued and fewer than TAKO_MAX_WORKERS jobs run."""
    running = (
        Execution.objects.filter(status=Execution.Status.RUNNING)
        .order_by()
        .annotate(n=Func(F("pk"), function="COUNT", output_field=IntegerField()))
        .values("n")
    )
    budget: LessThan = LessThan(Subquery(running, output_field=IntegerField()), Value(settings.TAKO_MAX_WORKERS))
    return Execution.objects.filter(budget).filter(pk=execution.pk, status=Execution.Status.QUEUED)


def requeue(execution: Execution) -> bool:
    """Back from running to queued, its container never having started (its worker's engine
    fails, or its worker was lost before the start). The caller dispatches it again."""
    requeued = Execution.objects.filter(pk=execution.pk, status=Execution.Status.RUNNING).update(
        status=Execution.Status.QUEUED, started_at=None, worker="", heartbeat_at=None
    )
    if requeued:
        live.notify_execution_changed(execution.pk)
    return bool(requeued)


def end(
    execution: Execution,
    outcome: Outcome,
    *,
    result: RunResult | None = None,
    output: Any = None,
    expected: Collection[str] = ACTIVE,
) -> bool:
    """End the execution as `outcome` says, if its status is still one of `expected`; True if
    this call ended it. With it go the timings, what the run left (`result`: its streams, exit
    code, timings, artifacts, the pool's hit or miss; `output`: its result.json), a dead letter
    for the error types kept for triage, and a word to its open pages. Afterwards `execution`
    holds how it ended, whoever ended it (this call's values, else those stored by the other)."""
    now = timezone.now()
    fields: dict[str, Any] = {
        "status": outcome.status,
        "error_type": outcome.error_type,
        "error_message": outcome.message and outcome.message.replace("\x00", "\ufffd"),
        "error_phase": outcome.phase,
        "ended_at": now,
        "total_ms": int((now - execution.created_at).total_seconds() * 1000),
        "output": output,
    }
    if result is not None:
        fields |= {
            "exit_code": result.exit_code,
            "stdout": result.stdout,
            "stderr": result.stderr,
            "stdout_truncated": result.stdout_truncated,
            "stderr_truncated": result.stderr_truncated,
            "startup_ms": result.startup_ms,
            "dep_install_ms": result.dep_install_ms,
            "execution_ms": result.execution_ms,
            "resource_usage": result.resource_usage or None,
            "job_ref": result.image_ref,
            "runtime": result.runtime,
            "warm_start": result.warm,
        }
    # Artifacts and a dead letter are stored with the end, or not at all; a run leaving neither
    # (the common case) ends in one statement.
    leaves_more = bool(result is not None and result.artifacts) or outcome.error_type in DEAD_LETTER_TYPES
    with transaction.atomic() if leaves_more else contextlib.nullcontext():
        ended = Execution.objects.filter(pk=execution.pk, status__in=list(expected)).update(**fields)
        if not ended:  # someone else ended it: what they stored
            execution.refresh_from_db()
            logger.info("Execution %s had already ended (%s); not ended again", execution.pk, execution.status)
            return False
        for field, value in fields.items():
            setattr(execution, field, value)
        if result is not None:
            _store_artifacts(execution, result)
        dead_letter_add(execution)
    if result is not None and result.warm is not None:
        pool_count(environment=execution.job_type, warm=result.warm)
    live.notify_execution_changed(execution.pk)
    return True


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
