"""Start this host's worker cluster: `manage.py tako_worker` (django-q2's qcluster, after recovery).

Beside it, supervised: the webhook cluster (`tako_webhooks`, deliveries on a queue of their own).

Jobs left running by this host's previous cluster (it crashed or was killed) are ended or queued
again first; the every-minute sweep for jobs whose worker stopped beating and the daily pruning of
old executions are scheduled. The host's warm pool keeper (`tako_pool`) runs beside the cluster,
in its own process (the cluster forks its workers, which must not inherit its threads).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections
from django_q.models import Schedule

from executions import services
from executions.management.commands.tako_pool import PARENT_ENV
from executions.management.commands.tako_webhooks import PARENT_ENV as WEBHOOKS_PARENT_ENV
from executions.models import ProcessBeat
from executions.resilience import this_engine
from executions.services.heartbeats import Heartbeat
from takoweb.supervise import Program, Supervisor

logger = logging.getLogger(__name__)


class Housekeeping:
    """Run from the cluster's main process, never as a queued task: every few seconds, hands to the
    queue the jobs it could not take while it was down (services.executions_dispatch_waiting); every
    STALE_EVERY_SECONDS, ends or queues again the jobs whose worker stopped beating (an end the
    database did not take while it was away leaves a job "running"). The scheduled sweep does the
    latter too, but as a task it waits in the queue behind jobs that wait for the worker budget
    those stale jobs hold: with every worker waiting, it would never run. Quiet while the database
    is away."""

    DISPATCH_EVERY_SECONDS = 2.0
    STALE_EVERY_SECONDS = 10.0

    def __init__(self) -> None:
        self._dispatched_at = 0.0
        self._recovered_at = time.monotonic()  # the start just recovered this host's own jobs

    def run_if_due(self, monotonic_now: float) -> None:
        try:
            if monotonic_now - self._dispatched_at >= self.DISPATCH_EVERY_SECONDS:
                self._dispatched_at = monotonic_now
                services.executions_dispatch_waiting()
            if monotonic_now - self._recovered_at >= self.STALE_EVERY_SECONDS:
                self._recovered_at = monotonic_now
                services.executions_recover()
        except DatabaseError as exc:
            logger.warning("Housekeeping: %s", exc)
            close_old_connections()  # one the database dropped is opened afresh next time


def ensure_schedules() -> None:
    """The cluster's periodic tasks. Each queue's schedules run on its own cluster: another
    deployment's cluster on the same database would run them with its own settings, into its own queue."""
    queue = settings.TAKO_QUEUE_NAME
    periodic = {
        "recover stale executions": (
            "executions.tasks.recover_stale_executions",
            {"schedule_type": Schedule.MINUTES, "minutes": 1},
        ),
        "prune old executions": ("executions.tasks.prune_executions", {"schedule_type": Schedule.DAILY}),
    }
    for name, (func, timing) in periodic.items():
        Schedule.objects.update_or_create(
            name=f"{queue}: {name}", defaults={"cluster": queue, "func": func, "repeats": -1, **timing}
        )


class Command(BaseCommand):
    help = "Recover this host's orphaned jobs, then run the django-q2 cluster that executes jobs."

    def handle(self, *args: Any, **options: Any) -> None:
        recovered = services.executions_recover(worker_prefix=services.worker_name("worker"))
        self.stdout.write(f"Recovered {recovered} job(s) left by this host's previous worker cluster.")
        ensure_schedules()
        # The keeper and the webhook cluster are started again whenever they die (an engine fault
        # the keeper did not survive, a kill), and end if this process is killed (their PARENT_ENV).
        keeper_env = {**os.environ, PARENT_ENV: str(os.getpid())}
        webhooks_env = {**os.environ, WEBHOOKS_PARENT_ENV: str(os.getpid()), "Q_CLUSTER_NAME": settings.WEBHOOK_QUEUE}
        manage = str(settings.BASE_DIR / "manage.py")
        keeper = Supervisor(
            [Program("webhook cluster", [sys.executable, manage, "tako_webhooks"], env=webhooks_env)]
            + (
                [Program("pool keeper", [sys.executable, manage, "tako_pool"], env=keeper_env)]
                if settings.TAKO_POOL_ENABLED
                else []
            )
        )
        keeper.start_all()
        # This host's cluster beats on its own (the keeper may be off): web-only hosts hand jobs
        # to the engines of the clusters that beat.
        heartbeat = Heartbeat(ProcessBeat.Role.WORKER, engine=this_engine())
        heartbeat.beat_quietly()
        housekeeping = Housekeeping()
        try:
            call_command("qcluster")  # returns once the cluster runs (in child processes) …
            while multiprocessing.active_children():  # … which end on SIGTERM/SIGINT (its own handler)
                keeper.tick()
                heartbeat.beat_if_due(time.monotonic())
                housekeeping.run_if_due(time.monotonic())
                time.sleep(0.5)
        finally:
            keeper.stop_all()  # the keeper drains the pool
