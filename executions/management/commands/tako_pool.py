"""Keep this host's warm pool: `manage.py tako_pool` (tako_worker starts it beside the cluster).

Runs until SIGTERM or SIGINT, then removes the pooled containers no job took.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from executions.services import PoolKeeper

# Set by tako_worker to its own pid: a keeper whose cluster was killed (SIGKILL leaves it no time
# to stop its keeper) drains its pool and ends, so a restarted cluster's keeper is the only one.
PARENT_ENV = "TAKO_KEEPER_PARENT_PID"


def _stop_when_orphaned(parent: int, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        if os.getppid() != parent:
            logging.getLogger(__name__).warning("The worker cluster that started this keeper is gone; stopping")
            stop.set()


class Command(BaseCommand):
    help = "Keep containers started ahead of time for each environment with a pool_size, until stopped."

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if os.environ.get(PARENT_ENV):  # started by tako_worker: it goes when its cluster goes
            threading.Thread(target=_stop_when_orphaned, args=(int(os.environ[PARENT_ENV]), stop), daemon=True).start()
        self.stdout.write("Keeping the warm pool (stop with SIGTERM or Ctrl-C).")
        PoolKeeper().run(stop)
        self.stdout.write("Warm pool drained.")
