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
from executions.models import Batch, Execution
from executions.sandbox import SandboxError, SandboxUnavailable, get_sandbox
from executions.sandbox.classify import failure
from executions.services import lifecycle

logger = logging.getLogger(__name__)

RUN_TASK = "executions.tasks.run_execution"
# An async job not yet handed to the queue this long after its submission was refused by it.
DISPATCH_SETTLE_SECONDS = 2.0


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


def execution_dispatch(execution: Execution, *, hops: int = 0) -> bool:
    """Hand a queued execution to the worker clusters (`hops`: how often workers passed it on);
    True if the queue took it.

    While the queue (Redis) is down, an async job stays queued, marked as not handed over
    (dispatched_at None), and the worker hosts hand it over once the queue answers again
    (executions_dispatch_waiting), so a short outage of the queue loses nothing accepted; past
    TAKO_OUTAGE_GRACE after its submission it ends service_unavailable instead, saying how long
    it waited. A sync job's caller is waiting for an answer: it ends service_unavailable at once."""
    Execution.objects.filter(pk=execution.pk).update(dispatched_at=timezone.now())
    try:
        args = (str(execution.pk), hops) if hops else (str(execution.pk),)
        async_task(RUN_TASK, *args, task_name=f"execution-{execution.pk}")
        return True
    except Exception as exc:  # the broker is down: the job must not sit in "queued" forever
        waited = (timezone.now() - execution.created_at).total_seconds()
        if execution.is_async and waited < settings.TAKO_OUTAGE_GRACE:
            Execution.objects.filter(pk=execution.pk, status=Execution.Status.QUEUED).update(dispatched_at=None)
            logger.warning("Execution %s: the job queue is unavailable (%s); it waits, queued", execution.pk, exc)
            return False
        logger.exception("Could not enqueue execution %s", execution.pk)
        message = f"The job queue is unavailable: {exc}"
        if execution.is_async:
            message += f" (the job waited {waited:.0f} s for it, TAKO_OUTAGE_GRACE)"
        outcome = failure("service_unavailable", message, phase="startup")
        lifecycle.end(execution, outcome, expected=[Execution.Status.QUEUED])
        return False


def executions_dispatch_waiting(*, settled: float = DISPATCH_SETTLE_SECONDS, limit: int = 100) -> int:
    """Hand to the queue the async jobs it could not take when they were submitted or passed on
    (it was down), oldest first; returns how many it took. Each job is handed over by one caller
    only (several worker hosts call this); `settled`: younger jobs are left to their submitter,
    whose hand-over may still be under way. Stops at the first failure: the queue is still down."""
    cutoff = timezone.now() - timedelta(seconds=settled)
    waiting = Execution.objects.filter(
        status=Execution.Status.QUEUED, is_async=True, dispatched_at__isnull=True, created_at__lt=cutoff
    ).order_by("created_at")[:limit]
    count = 0
    for execution in waiting:
        mine = Execution.objects.filter(pk=execution.pk, status=Execution.Status.QUEUED, dispatched_at__isnull=True)
        if not mine.update(dispatched_at=timezone.now()):
            continue  # another host took it, or it ended (cancelled) meanwhile
        if execution_dispatch(execution):
            count += 1
        elif Execution.objects.filter(pk=execution.pk, status=Execution.Status.QUEUED).exists():
            break  # the queue is still down (this one waits on; the others too)
    if count:
        logger.warning("Handed %d job(s) to the queue that it could not take while it was down", count)
    return count


def executions_dispatch(executions: list[Execution]) -> None:
    """Hand many queued executions to the worker clusters (a batch): one update, then a task each."""
    Execution.objects.filter(pk__in=[e.pk for e in executions]).update(dispatched_at=timezone.now())
    for position, execution in enumerate(executions):
        try:
            async_task(RUN_TASK, str(execution.pk), task_name=f"execution-{execution.pk}")
        except Exception as exc:  # the broker is down: no job may sit in "queued" forever
            logger.exception("Could not enqueue %d executions of a batch", len(executions) - position)
            outcome = failure("service_unavailable", f"The job queue is unavailable: {exc}", phase="startup")
            for rest in executions[position:]:
                lifecycle.end(rest, outcome, expected=[Execution.Status.QUEUED])
            return


def batch_cancel(batch: Batch) -> int:
    """Cancel every member of the batch that has not ended (as execution_cancel does each);
    returns how many it cancelled or asked to stop."""
    cancelled = 0
    for execution in batch.executions.filter(status__in=lifecycle.ACTIVE).order_by("batch_index"):
        try:
            execution_cancel(execution)
        except AlreadyEnded:  # it ended meanwhile
            continue
        cancelled += 1
    return cancelled


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
