"""django-q2 entry points: thin, fetch by id, call a service."""

from __future__ import annotations

from django.conf import settings

from executions import services
from executions.health import probe_breaker
from executions.models import Execution
from executions.sandbox import get_sandbox

MAX_HOPS = 5  # a job passed on this often runs where it lands


def run_execution(execution_id: str, hops: int = 0) -> None:
    """Run a queued job here, unless this host's engine is failing while another's works: then
    the job goes back to the queue for another worker (a few hops at most, then it runs here and
    ends in the dead letter queue if the engine still fails)."""
    execution = services.execution_run(execution_id=execution_id, role="worker", may_hand_over=hops < MAX_HOPS)
    if execution.status == Execution.Status.QUEUED:  # handed over: this engine fails, another works
        services.execution_dispatch(execution, hops=hops + 1)


def recover_stale_executions() -> int:
    """Scheduled every minute: jobs whose worker stopped beating are ended or run again, jobs
    whose task the queue lost are queued again, and containers left behind when the engine
    failed during their removal are removed."""
    recovered = services.executions_recover()
    recovered += services.executions_redispatch(older_than=settings.TAKO_REDISPATCH_AFTER)
    probe_breaker(get_sandbox().ping())
    services.containers_reap_quietly()
    return recovered


def prune_executions() -> int:
    """Scheduled daily: executions older than TAKO_RETENTION_DAYS go, with their artifacts."""
    return services.executions_prune(older_than_days=settings.TAKO_RETENTION_DAYS)
