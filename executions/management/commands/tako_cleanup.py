"""Remove containers and run folders left over by a crash: `manage.py tako_cleanup`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from executions.sandbox import SandboxError, SandboxUnavailable, get_sandbox
from executions.services import environment_builds_reset


class Command(BaseCommand):
    help = "Remove leftover sandbox containers and run folders (run at start-up, before any job)."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            removed = get_sandbox().remove_stale_containers()
        except (SandboxUnavailable, SandboxError) as exc:
            raise CommandError(str(exc)) from exc
        work_dir = Path(settings.TAKO_WORK_DIR)
        folders = list(work_dir.iterdir()) if work_dir.exists() else []
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        interrupted = environment_builds_reset()
        self.stdout.write(
            f"Removed {removed} stale container(s) and {len(folders)} run folder(s); "
            f"{interrupted} interrupted build(s) marked failed."
        )
