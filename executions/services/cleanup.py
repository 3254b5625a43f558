"""Removing containers that outlived their job (the engine failed while they were being removed)."""

from __future__ import annotations

import uuid

from executions.models import Execution
from executions.sandbox import SandboxError, SandboxUnavailable, get_sandbox


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
        try:
            running = Execution.objects.filter(pk=uuid.UUID(execution_id), status=Execution.Status.RUNNING).exists()
        except ValueError:
            running = False  # not one of ours
        if not running:
            removed += sandbox.stop(execution_id)
    return removed
