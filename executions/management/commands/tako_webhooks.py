"""Deliver webhooks: `Q_CLUSTER_NAME=tako-webhooks manage.py tako_webhooks` (tako_worker starts it).

A django-q2 cluster on the webhook queue alone (settings.WEBHOOK_QUEUE, with its own
TAKO_WEBHOOK_WORKERS), so a receiver that hangs for its 10 s holds one of these workers, never
one a job is waiting for; and, every second, the retries whose time has come are queued to it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from executions import services

# Set by tako_worker to its own pid: a webhook cluster whose parent was killed ends too, so a
# restarted tako_worker's is the only one.
PARENT_ENV = "TAKO_WEBHOOKS_PARENT_PID"
SWEEP_SECONDS = 1.0

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the cluster that delivers webhooks, and queue their retries when due."

    def handle(self, *args: Any, **options: Any) -> None:
        if os.environ.get("Q_CLUSTER_NAME") != settings.WEBHOOK_QUEUE:
            # django-q2 reads the queue's name when it is imported, before any command runs
            raise CommandError(
                f"Run with Q_CLUSTER_NAME={settings.WEBHOOK_QUEUE} in the environment (tako_worker does)"
            )
        parent = int(os.environ.get(PARENT_ENV) or 0)
        call_command("qcluster")  # returns once the cluster runs (in child processes)
        swept_at = 0.0
        while multiprocessing.active_children():  # they end on SIGTERM/SIGINT (the cluster's handler)
            if parent and os.getppid() != parent:
                logger.warning("The worker cluster that started the webhook cluster is gone; stopping")
                os.kill(os.getpid(), signal.SIGTERM)
                parent = 0
            if time.monotonic() - swept_at >= SWEEP_SECONDS:
                swept_at = time.monotonic()
                try:
                    services.webhooks_due()
                except DatabaseError as exc:  # the database is away: swept again later
                    logger.warning("Webhook retries not queued: %s", exc)
            time.sleep(0.2)
