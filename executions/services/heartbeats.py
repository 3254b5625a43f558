"""Each long-running process of a host beats: the web server, the worker cluster, the pool keeper.

A process is alive while its beat is younger than ALIVE_SECONDS. /health and the operations page
list processes from here; the engines a web-only host reports, and the warm pool counts it shows,
come only from processes that are beating (a killed keeper's last numbers are not shown).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone

from executions.models import ProcessBeat
from executions.resilience import engine_runtimes_record, engine_seen
from executions.sandbox import SandboxError, SandboxUnavailable, get_sandbox

logger = logging.getLogger(__name__)

BEAT_SECONDS = 10.0
ALIVE_SECONDS = 30.0  # three beats missed: the process is gone
FORGET_AFTER = timedelta(hours=1)  # rows of processes gone this long are deleted

RUNTIMES_EVERY_SECONDS = 60.0


def host_name() -> str:
    return str(settings.TAKO_WORKER_NAME or socket.gethostname())


class Heartbeat:
    """Beats for this process every BEAT_SECONDS; a worker's or keeper's beat also says its
    engine's host is alive (the engines other hosts may hand jobs to, and /health lists)."""

    def __init__(self, role: str, *, engine: str = "") -> None:
        self.role = role
        self.engine = engine
        self.started_at = timezone.now()
        self._beaten_at = 0.0
        self._runtimes_reported_at = -RUNTIMES_EVERY_SECONDS

    def beat(self) -> None:
        now = timezone.now()
        ProcessBeat.objects.update_or_create(
            host=host_name(),
            role=self.role,
            pid=os.getpid(),
            defaults={"engine": self.engine, "started_at": self.started_at, "beat_at": now},
        )
        if self.engine:
            engine_seen(self.engine)
            self._report_runtimes()
        ProcessBeat.objects.filter(beat_at__lt=now - FORGET_AFTER).delete()

    def _report_runtimes(self) -> None:
        """Which runtimes the engine has (what /job-types says of each environment's), each minute."""
        if time.monotonic() - self._runtimes_reported_at < RUNTIMES_EVERY_SECONDS:
            return
        try:
            engine_runtimes_record(get_sandbox().runtimes(), self.engine)
        except (SandboxUnavailable, SandboxError) as exc:
            logger.warning("Could not ask the engine for its runtimes: %s", exc)
            return
        self._runtimes_reported_at = time.monotonic()

    def beat_quietly(self) -> bool:
        """Beat, logging rather than raising when the database is away (it beats again later)."""
        try:
            self.beat()
        except DatabaseError as exc:
            logger.warning("Heartbeat of %s: %s", self.role, exc)
            # A connection the database dropped (a restart) stays broken until closed: Django
            # closes it only around a request, and a worker's loop serves none.
            close_old_connections()
            return False
        return True

    def beat_if_due(self, monotonic_now: float) -> None:
        if monotonic_now - self._beaten_at >= BEAT_SECONDS:
            self.beat_quietly()
            self._beaten_at = monotonic_now

    def start_thread(self) -> threading.Event:
        """Beat from a daemon thread (the web server, which has no loop of its own to beat from);
        set the returned event to stop it."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                self.beat_quietly()
                connections.close_all()  # this thread's own connection, not kept between beats
                stop.wait(BEAT_SECONDS)

        threading.Thread(target=loop, name=f"heartbeat-{self.role}", daemon=True).start()
        return stop


def live_engines(role: str) -> set[str]:
    """The engines of the processes of `role` that are beating."""
    since = timezone.now() - timedelta(seconds=ALIVE_SECONDS)
    rows = ProcessBeat.objects.filter(role=role, beat_at__gte=since).exclude(engine="")
    return set(rows.values_list("engine", flat=True))


def processes() -> list[dict[str, Any]]:
    """Every process seen in the last hour, by host, with how long ago it beat and whether it lives."""
    now = timezone.now()
    rows = ProcessBeat.objects.filter(beat_at__gte=now - FORGET_AFTER).order_by("host", "role", "-beat_at")
    return [
        {
            "host": row.host,
            "role": row.role,
            "pid": row.pid,
            "engine": row.engine or None,
            "started_at": row.started_at.isoformat(),
            "last_beat_seconds": round((now - row.beat_at).total_seconds(), 1),
            "alive": (now - row.beat_at).total_seconds() < ALIVE_SECONDS,
        }
        for row in rows
    ]
