"""django-q2 entry points: thin, fetch by id, call a service."""

from __future__ import annotations

import time

from django.conf import settings

from executions import services
from executions.health import probe_breaker
from executions.resilience import another_engine_available, breaker_is_open, breaker_refuses
from executions.sandbox import get_sandbox
from executions.services.limits import rate_counters_prune
from executions.services.runs import while_the_database_is_away

MAX_HOPS = 5  # a job whose start failed this often on engines with a closed breaker runs where it lands
HAND_OVER_PAUSE_SECONDS = 0.5
OUTAGE_PAUSE_SECONDS = 3.0


def run_execution(execution_id: str, hops: int = 0) -> None:
    """A queued job's task: run it (below), trying again while the database is away (a restart),
    up to TAKO_OUTAGE_GRACE. Safe to repeat: a job is claimed once, and a run that claimed it
    records its end itself (services.execution_run), so a repeat finds it claimed and does nothing.
    Without this the task would be lost with the failure, leaving its job queued until the sweep
    queues it again (TAKO_REDISPATCH_AFTER)."""
    while_the_database_is_away(
        lambda: _run_execution(execution_id, hops),
        what=f"running execution {execution_id}",
        seconds=settings.TAKO_OUTAGE_GRACE,
    )


def _run_execution(execution_id: str, hops: int = 0) -> None:
    """Run a queued job here, unless this host's engine is failing while another's works: then
    the job goes back to the queue for another worker. A host whose breaker is open passes it on
    without counting (its queue consumer stops taking jobs within a second); a failed start with
    the breaker still closed counts a hop, and after MAX_HOPS the job runs where it lands (and
    goes to the dead letter queue if that engine still fails)."""
    if breaker_refuses() and not another_engine_available():
        held = services.execution_hold_for_engine(execution_id)
        if held is not None:  # every engine fails: it waits, queued and unclaimed
            time.sleep(OUTAGE_PAUSE_SECONDS)
            services.execution_dispatch(held, hops=hops)
            return
    execution = services.execution_run(execution_id=execution_id, role="worker", may_hand_over=hops < MAX_HOPS)
    # Whether this run put its job back in the queue, not the job's status now: another worker's
    # task may have claimed it already (any task runs the job whose turn it is), and the task this
    # one used up must be replaced all the same, or some other job would be left without one.
    requeued_here = getattr(execution, "requeued_here", False)
    if requeued_here and not another_engine_available():
        # No engine works: it waits out the outage (within TAKO_OUTAGE_GRACE), queued; a pause
        # between tries keeps the workers from spinning on a dead engine.
        time.sleep(OUTAGE_PAUSE_SECONDS)
        services.execution_dispatch(execution, hops=hops)
    elif requeued_here:  # handed over: this engine fails, another works
        if breaker_is_open():
            time.sleep(HAND_OVER_PAUSE_SECONDS)  # let the healthy hosts take it
            services.execution_dispatch(execution, hops=hops)
        else:
            services.execution_dispatch(execution, hops=hops + 1)


def build_environment(name: str, tag: str | None = None) -> None:
    """Build a job type's image, queued by services.environment_build_request; the outcome is
    recorded on the environment, where the operations page and GET /job-types read it."""
    services.environment_build_queued(name=name, tag=tag)


def recover_stale_executions() -> int:
    """Scheduled every minute: jobs whose worker stopped beating are ended or run again, jobs
    whose task the queue lost are queued again, and containers left behind when the engine
    failed during their removal are removed."""
    recovered = services.executions_recover()
    recovered += services.executions_redispatch(older_than=settings.TAKO_REDISPATCH_AFTER)
    rate_counters_prune()
    probe_breaker(get_sandbox().ping())
    services.containers_reap_quietly()
    services.webhooks_recover()
    return recovered


def deliver_webhook(execution_id: str) -> None:
    """One attempt of a job's webhook (on the webhook queue's own cluster, never the jobs')."""
    services.webhook_deliver(execution_id)


def prune_executions() -> int:
    """Scheduled daily: executions older than TAKO_RETENTION_DAYS go, with their artifacts."""
    return services.executions_prune(older_than_days=settings.TAKO_RETENTION_DAYS)
