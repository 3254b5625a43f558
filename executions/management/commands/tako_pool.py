"""Keep this host's warm pool: `manage.py tako_pool` (tako_worker starts it beside the cluster).

Runs until SIGTERM or SIGINT, then removes the pooled containers no job took.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from executions.services import PoolKeeper


class Command(BaseCommand):
    help = "Keep containers started ahead of time for each environment with a pool_size, until stopped."

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write("Keeping the warm pool (stop with SIGTERM or Ctrl-C).")
        PoolKeeper().run(stop)
        self.stdout.write("Warm pool drained.")
