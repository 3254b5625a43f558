"""django-q2 entry points: thin, fetch by id, call a service."""

from __future__ import annotations

from django.conf import settings

from executions import services
from executions.health import probe_breaker
from executions.sandbox import get_sandbox


def run_execution(execution_id: str) -> None:
    services.execution_run(execution_id=execution_id, role="worker")


def recover_stale_executions() -> int:
    """Scheduled every minute: jobs whose worker stopped beating are ended or run again, and
    containers left behind when the engine failed during their removal are removed."""
    recovered = services.executions_recover()
    probe_breaker(get_sandbox().ping())
    services.containers_reap_quietly()
    return recovered


def prune_executions() -> int:
    """Scheduled daily: executions older than TAKO_RETENTION_DAYS go, with their artifacts."""
    return services.executions_prune(older_than_days=settings.TAKO_RETENTION_DAYS)
