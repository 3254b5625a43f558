"""Remove containers and run folders left over by a crash: `manage.py tako_cleanup`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from executions import services
from executions.sandbox import SandboxError, SandboxUnavailable, get_sandbox


class Command(BaseCommand):
    help = "At start-up, before any job: remove leftover containers and run folders, recover jobs."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            removed = get_sandbox().remove_stale_containers()
        except (SandboxUnavailable, SandboxError) as exc:
            raise CommandError(str(exc)) from exc
        work_dir = Path(settings.TAKO_WORK_DIR)
        folders = list(work_dir.iterdir()) if work_dir.exists() else []
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        interrupted = services.environment_builds_reset()
        # The whole service of this host is starting: none of its jobs can still be running.
        recovered = services.executions_recover(worker_prefix=f"{settings.TAKO_WORKER_NAME}:")
        self.stdout.write(
            f"Removed {removed} stale container(s) and {len(folders)} run folder(s); "
            f"{interrupted} interrupted build(s) marked failed; {recovered} interrupted job(s) recovered."
        )
