"""django-q2 entry points: thin, fetch by id, call a service."""

from __future__ import annotations

from executions import services


def run_execution(execution_id: str) -> None:
    services.execution_run(execution_id=execution_id, role="worker")


def recover_stale_executions() -> int:
    """Scheduled every minute: jobs whose worker stopped beating are ended or run again."""
    return services.executions_recover()
