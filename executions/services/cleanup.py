"""Cleaning up: containers that outlived their job, and executions past their retention."""

from __future__ import annotations

import shutil
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from executions.models import AuditEvent, DeadLetter, Execution
from executions.sandbox import SandboxError, SandboxUnavailable, get_sandbox
from executions.services.input_files import input_blobs_sweep
from executions.services.preload import is_young_check


def containers_reap_quietly() -> int:
    """containers_reap, for callers that must not fail when the engine is away (it retries later)."""
    try:
        return containers_reap()
    except (SandboxUnavailable, SandboxError):
        return 0


def containers_reap() -> int:
    """Remove containers whose job has ended (left when the engine failed during their removal)."""
    sandbox = get_sandbox()
    removed = 0
    for execution_id in sandbox.running_executions():
        if is_young_check(execution_id):
            continue  # a preload check, not a job's (services/preload.py); it ends by itself
        try:
            running = Execution.objects.filter(pk=uuid.UUID(execution_id), status=Execution.Status.RUNNING).exists()
        except ValueError:
            running = False  # not one of ours
        if not running:
            removed += sandbox.stop(execution_id)
    return removed


def executions_prune(*, older_than_days: int, batch_size: int = 1000) -> int:
    """Delete ended executions (with their artifacts, input files and DLQ entries) older than the retention.

    Works in batches so a large table is never locked for long; jobs still queued or running are
    never touched. Returns how many executions were deleted.
    """
    if older_than_days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=older_than_days)
    old = Execution.objects.filter(status__in=Execution.TERMINAL, created_at__lt=cutoff)
    deleted = 0
    while True:
        ids = list(old.values_list("pk", flat=True)[:batch_size])
        if not ids:
            break
        with transaction.atomic():
            DeadLetter.objects.filter(execution_id__in=ids).delete()
            Execution.objects.filter(pk__in=ids).delete()  # artifacts' rows cascade
        for execution_id in ids:
            shutil.rmtree(Path(settings.DATA_DIR) / "artifacts" / str(execution_id), ignore_errors=True)
        deleted += len(ids)
    if deleted:
        input_blobs_sweep()  # input files no execution lists any more
    DeadLetter.objects.filter(created_at__lt=cutoff).delete()
    AuditEvent.objects.filter(at__lt=cutoff).delete()  # the audit log is kept as long as the jobs
    return deleted
