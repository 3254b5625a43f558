"""Delete executions past their retention: `manage.py tako_prune [--days N]` (also run daily by the cluster)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from executions import services


class Command(BaseCommand):
    help = "Delete ended executions (and their artifacts and DLQ entries) older than the retention."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=settings.TAKO_RETENTION_DAYS, help="keep this many days")

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = services.executions_prune(older_than_days=options["days"])
        self.stdout.write(f"Deleted {deleted} execution(s) older than {options['days']} day(s).")
