"""How a job moves: claimed (queued → running), requeued (running → queued), ended (→ a terminal status).

The only code that writes an execution's status. Each move is a conditional update
(`filter(pk=…, status__in=…).update(…)`) and acts only when it changed the row, so two enders
racing (a run finishing as the recovery sweep gives up on it, a cancel as the queue fails) end a
job once: the first one wins, the other is a no-op. Every move tells the job's open pages.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import logging
import math
import mimetypes
import time
from collections import defaultdict, deque
from collections.abc import Collection
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import (
    Count,
    Max,
    Min,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import Substr
from django.utils import timezone

from executions import live
from executions.models import Artifact, Execution, Lock
from executions.sandbox import RunResult
from executions.sandbox.classify import Outcome
from executions.services.dlq import DEAD_LETTER_TYPES, dead_letter_add
from executions.services.pool import pool_count
from executions.services.webhooks import webhook_queue

logger = logging.getLogger(__name__)

CLAIM_POLL_SECONDS = 0.05
CLAIM_POLL_LONGEST_SECONDS = 0.25  # workers waiting for room look again at least this often
ACTIVE = (Execution.Status.QUEUED, Execution.Status.RUNNING)


# -- claiming: a host's budget, and fair turns between callers -------------------------------------
@dataclass(frozen=True)
class Budget:
    """What a host may run at once: containers, the sum of their memory limits, of their CPU limits."""

    containers: int
    memory: int
    cpus: float

    @classmethod
    def for_job(cls, *, quick: bool) -> Budget:
        """The whole budget for quick work; long jobs leave TAKO_QUICK_RESERVE of each part free."""
        containers, memory = settings.TAKO_MAX_WORKERS, settings.TAKO_HOST_MEMORY
        cpus = settings.TAKO_HOST_CPUS * settings.TAKO_CPU_OVERSUBSCRIPTION
        if quick:
            return cls(containers, memory, cpus)
        share = 1 - settings.TAKO_QUICK_RESERVE
        return cls(max(1, math.floor(containers * share)), int(memory * share), cpus * share)


def host_prefix() -> str:
    """The start of the worker name of every run on this host (runs.worker_name)."""
    return f"{settings.TAKO_WORKER_NAME}:"


def _running_here() -> QuerySet[Execution]:
    """This host's running jobs: their worker name starts with its prefix (case counts: SQLite's
    LIKE, behind __startswith, ignores it). The claim's SQL (_claim_if_it_fits) says the same."""
    prefix = host_prefix()
    running = Execution.objects.filter(status=Execution.Status.RUNNING).order_by()
    return running.annotate(worker_prefix=Substr("worker", 1, len(prefix))).filter(worker_prefix=prefix)


def host_use() -> dict[str, Any]:
    """What runs on this host now, beside its budget (the operations page)."""
    use = _running_here().aggregate(containers=Count("pk"), memory=Sum("memory_bytes"), cpus=Sum("cpus"))
    full = Budget.for_job(quick=True)
    return {
        "containers": use["containers"],
        "memory": use["memory"] or 0,
        "cpus": round(use["cpus"] or 0, 2),
        "budget": full,
        "long_budget": Budget.for_job(quick=False),
    }


def caller_use() -> list[dict[str, Any]]:
    """Each caller with jobs waiting or running: how many of each, its weight, its oldest wait."""
    active = Execution.objects.filter(status__in=ACTIVE).order_by()
    rows = active.values("caller").annotate(
        queued=Count("pk", filter=Q(status=Execution.Status.QUEUED)),
        running=Count("pk", filter=Q(status=Execution.Status.RUNNING)),
        weight=Max("caller_weight"),
        waiting_since=Min("created_at", filter=Q(status=Execution.Status.QUEUED)),
    )
    return sorted(rows, key=lambda row: (-row["running"], -row["queued"], row["caller"]))


def _claim_if_it_fits(execution: Execution, moved: dict[str, Any]) -> int:
    """Queued → running (`moved`: the new status, start, beat and worker) in one UPDATE, if
    `execution` fits in what this host's running jobs leave of its budget. A job alone on its host
    always fits, so one larger than the whole budget still runs (by itself). Written in SQL once:
    every run claims, and the ORM took 2-3 ms of Python to build this statement each time."""
    budget = Budget.for_job(quick=execution.quick)
    ops, table = connection.ops, connection.ops.quote_name(Execution._meta.db_table)
    prefix = host_prefix()
    # This host's running jobs, as _running_here() has them.
    here = f"FROM {table} WHERE status = %s AND SUBSTR(worker, 1, {len(prefix):d}) = %s"
    running_here = [Execution.Status.RUNNING, prefix]
    sql = (
        f"UPDATE {table} SET status = %s, started_at = %s, heartbeat_at = %s, worker = %s"  # noqa: S608 (a quoted name and an int)
        " WHERE id = %s AND status = %s AND ("
        f"(SELECT COUNT(*) {here}) = 0"
        f" OR ((SELECT COUNT(*) {here}) < %s"
        f" AND (SELECT COALESCE(SUM(memory_bytes), 0) {here}) + %s <= %s"
        f" AND (SELECT COALESCE(SUM(cpus), 0) {here}) + %s <= %s))"
    )
    params = [
        moved["status"],
        ops.adapt_datetimefield_value(moved["started_at"]),
        ops.adapt_datetimefield_value(moved["heartbeat_at"]),
        moved["worker"],
        Execution._meta.pk.get_db_prep_value(execution.pk, connection),
        Execution.Status.QUEUED,
        *running_here,
        *running_here,
        budget.containers,
        *running_here,
        execution.memory_bytes,
        budget.memory,
        *running_here,
        float(execution.cpus),
        budget.cpus,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def _claim_once(execution: Execution, worker: str) -> bool:
    """Queued → running in one conditional update, if it fits this host's budget now."""
    now = timezone.now()
    moved = {"status": Execution.Status.RUNNING, "started_at": now, "heartbeat_at": now, "worker": worker}
    if connection.features.has_select_for_update:
        with transaction.atomic():
            # One claimer per host at a time: a row lock, then the budget counted and the claim in one update.
            Lock.objects.select_for_update().get_or_create(name=f"budget:{host_prefix()}"[:100])
            claimed = _claim_if_it_fits(execution, moved)
    else:  # SQLite: one UPDATE takes the write lock before it counts, so claimers are serialised
        claimed = _claim_if_it_fits(execution, moved)
    if not claimed:
        return False
    for field, value in moved.items():
        setattr(execution, field, value)
    live.notify_execution_changed(execution.pk)
    return True


def claim(execution: Execution, *, worker: str) -> bool:
    """Move this execution from queued to running once it fits this host's budget; waits for
    room. False when it was claimed elsewhere or ended (cancelled) while it waited. When claimed,
    `execution` holds the new status, start and worker (nothing else changed)."""
    while not _claim_once(execution, worker):
        if not Execution.objects.filter(pk=execution.pk, status=Execution.Status.QUEUED).exists():
            return False
        time.sleep(CLAIM_POLL_SECONDS)
    return True


def claim_next(token: Execution, *, worker: str) -> Execution | None:
    """A worker's claim: the queued job whose caller's turn it is (fair_order) that fits this
    host's budget, waiting for room while jobs wait; None when no job is queued. Each job queued
    has a task in the queue (its token); the task may run another caller's job first, and that
    job's task, finding its job gone, runs the next one: as many runs as jobs, in fair order."""
    delay = CLAIM_POLL_SECONDS
    while True:
        heads = caller_heads(including=token.pk)
        if not heads:
            return None
        for head in heads:
            if _claim_once(head, worker):
                return head
        time.sleep(delay)  # the budget is full: room comes when a run ends
        delay = min(delay * 2, CLAIM_POLL_LONGEST_SECONDS)


def _queued_rows(*, including: Any = None) -> list[Execution]:
    """The jobs workers may take, oldest first: async ones handed to the queue, and `including` (the
    token's own job, or a dispatched sync job). An async job the queue could not take (it was down)
    has no task yet: were another job's task to run it, that job would be left without one, queued
    for good; it is taken once it is handed over (jobs.executions_dispatch_waiting)."""
    fields = ("pk", "caller", "caller_weight", "created_at", "memory_bytes", "cpus", "quick", "is_async")
    queued = Execution.objects.filter(status=Execution.Status.QUEUED)
    handed_over = Q(is_async=True, dispatched_at__isnull=False)
    queued = queued.filter(handed_over | Q(pk=including)) if including is not None else queued.filter(handed_over)
    return list(queued.order_by("created_at", "pk").only(*fields))


def _running_by_caller() -> dict[str, int]:
    running = Execution.objects.filter(status=Execution.Status.RUNNING).order_by()
    return dict(running.values_list("caller").annotate(n=Count("pk")))


def _turn(served: int, weight: int, created_at: Any) -> tuple[float, Any]:
    """Whose turn: the caller with the fewest running jobs for its weight; then the oldest job."""
    return (served / max(weight, 1), created_at)


def caller_heads(*, including: Any = None) -> list[Execution]:
    """The oldest queued job of each caller, the caller whose turn it is first."""
    heads: dict[str, Execution] = {}
    for row in _queued_rows(including=including):
        heads.setdefault(row.caller, row)
    running = _running_by_caller()
    return sorted(heads.values(), key=lambda j: _turn(running.get(j.caller, 0), j.caller_weight, j.created_at))


def fair_order(queued: list[Execution], running: dict[str, int]) -> list[Execution]:
    """The order `queued` (oldest first) would start in, were nothing to end meanwhile: turn by
    turn, each start counting for its caller. Within a caller, the order of submission."""
    waiting: dict[str, deque[Execution]] = defaultdict(deque)
    for job in queued:
        waiting[job.caller].append(job)
    served = dict(running)
    turns = [(_turn(served.get(c, 0), jobs[0].caller_weight, jobs[0].created_at), c) for c, jobs in waiting.items()]
    heapq.heapify(turns)
    order: list[Execution] = []
    while turns:
        _, caller = heapq.heappop(turns)
        job = waiting[caller].popleft()
        order.append(job)
        served[caller] = served.get(caller, 0) + 1
        if waiting[caller]:
            following = waiting[caller][0]
            heapq.heappush(turns, (_turn(served[caller], following.caller_weight, following.created_at), caller))
    return order


def queue_position(execution: Execution) -> int | None:
    """1 for the next job to start, under fair turns between callers; None once it has started."""
    if execution.status != Execution.Status.QUEUED:
        return None
    queued = list(
        Execution.objects.filter(status=Execution.Status.QUEUED)
        .order_by("created_at", "pk")
        .only("pk", "caller", "caller_weight", "created_at")
    )
    order = [job.pk for job in fair_order(queued, _running_by_caller())]
    return order.index(execution.pk) + 1 if execution.pk in order else None


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
            "displays": result.displays,
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
    if execution.webhook_url:  # queued for its own workers once the end is committed, never sent here
        transaction.on_commit(partial(webhook_queue, execution.pk))
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
