"""The async job lifecycle after admission: hand to the queue, cancel, and recover from crashes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from django_q.tasks import async_task

from executions.errors import AlreadyEnded
from executions.models import Execution
from executions.sandbox import SandboxError, SandboxUnavailable, get_sandbox
from executions.sandbox.classify import failure
from executions.services import lifecycle

logger = logging.getLogger(__name__)

RUN_TASK = "executions.tasks.run_execution"


@dataclass(frozen=True)
class QueueStats:
    pending: int
    running: int
    max_workers: int
    max_queue_size: int

    def to_dict(self) -> dict[str, int]:
        return {
            "pending": self.pending,
            "running": self.running,
            "max_workers": self.max_workers,
            "max_queue_size": self.max_queue_size,
        }


def queue_stats() -> QueueStats:
    counts = dict(
        Execution.objects.filter(status__in=[Execution.Status.QUEUED, Execution.Status.RUNNING])
        .values_list("status")
        .annotate(n=Count("id"))
    )
    return QueueStats(
        pending=counts.get(Execution.Status.QUEUED, 0),
        running=counts.get(Execution.Status.RUNNING, 0),
        max_workers=settings.TAKO_MAX_WORKERS,
        max_queue_size=settings.TAKO_MAX_QUEUE_SIZE,
    )


def jobs_waiting_for_engine() -> int:
    """Queued jobs that are waiting out an outage of every engine (runs._wait_for_engine)."""
    return Execution.objects.filter(status=Execution.Status.QUEUED, engine_wait_since__isnull=False).count()


def execution_dispatch(execution: Execution, *, hops: int = 0) -> None:
    """Hand a queued execution to the worker clusters (`hops`: how often workers passed it on)."""
    Execution.objects.filter(pk=execution.pk).update(dispatched_at=timezone.now())
    try:
        args = (str(execution.pk), hops) if hops else (str(execution.pk),)
        async_task(RUN_TASK, *args, task_name=f"execution-{execution.pk}")
    except Exception as exc:  # the broker is down: the job must not sit in "queued" forever
        logger.exception("Could not enqueue execution %s", execution.pk)
        outcome = failure("service_unavailable", f"The job queue is unavailable: {exc}", phase="startup")
        lifecycle.end(execution, outcome, expected=[Execution.Status.QUEUED])


def execution_cancel(execution: Execution) -> Execution:
    """A queued job ends cancelled at once; a running one is asked to stop (its worker kills it)."""
    outcome = failure("cancelled", "Cancelled before it started", phase="startup")
    if not lifecycle.end(execution, outcome, expected=[Execution.Status.QUEUED]):
        asked = Execution.objects.filter(pk=execution.pk, status=Execution.Status.RUNNING).update(cancel_requested=True)
        if not asked:
            execution.refresh_from_db()
            raise AlreadyEnded(execution)
        execution.refresh_from_db()
    return execution


# -- crash recovery ------------------------------------------------------------------------------
def executions_redispatch(*, older_than: int) -> int:
    """Queue again the jobs still waiting `older_than` seconds after they were queued: a task the
    queue lost (a worker that died between taking it and claiming the job; Redis without its
    append-only file) must not leave its job waiting forever. A second task for a job is harmless:
    only one run can claim it."""
    cutoff = timezone.now() - timedelta(seconds=older_than)
    waiting = Execution.objects.filter(status=Execution.Status.QUEUED, dispatched_at__lt=cutoff)
    count = 0
    for execution in waiting:
        logger.warning(
            "Execution %s has waited in the queue since %s; queued again", execution.pk, execution.dispatched_at
        )
        execution_dispatch(execution)
        count += 1
    return count


def executions_recover(*, worker_prefix: str | None = None, stale_after: int | None = None) -> int:
    """End or re-run jobs whose worker is gone; returns how many were handled.

    A job is orphaned when its worker name starts with `worker_prefix` (that worker is
    starting, so nothing of it still runs) or its heartbeat is older than `stale_after` seconds.
    An async job whose container never started is queued again; one whose container ran is
    stopped and ends failed with internal_error, saying why. So does a sync run: its caller's
    connection went with the process that ran it, and a run nobody waits for is not repeated.
    """
    running = Execution.objects.filter(status=Execution.Status.RUNNING)
    if worker_prefix is not None:
        orphans = running.filter(worker__startswith=worker_prefix)
    else:
        cutoff = timezone.now() - timedelta(seconds=stale_after or settings.TAKO_STALE_AFTER)
        orphans = running.filter(heartbeat_at__lt=cutoff)
    handled = 0
    for execution in orphans:
        if execution.is_async and execution.container_started_at is None and not execution.cancel_requested:
            if lifecycle.requeue(execution):
                logger.warning("Execution %s never started on its lost worker; queued again", execution.pk)
                execution_dispatch(execution)
                handled += 1
            continue
        try:
            get_sandbox().stop(str(execution.pk))
        except (SandboxUnavailable, SandboxError):
            logger.warning("Could not stop the container of %s (removed at the next cleanup)", execution.pk)
        worker = execution.worker
        outcome = failure(
            "internal_error",
            f"The worker running this job ({worker}) stopped before the job finished; "
            "its container was stopped. Rerun the job to try again."
            if execution.is_async
            else f"The web process running this request ({worker}) stopped before it finished; "
            "its container was stopped. Send the request again.",
            phase="execution",
        )
        if lifecycle.end(execution, outcome, expected=[Execution.Status.RUNNING]):
            logger.warning("Execution %s was orphaned by worker %s; ended", execution.pk, worker)
            handled += 1
    return handled
