"""django-q2's ORM broker, made cheap to poll often on SQLite (the embedded default).

The stock ORM broker runs a query through the ORM on every poll; polling every 10 ms that way
costs several percent of a core while idle. SQLite can say in microseconds whether any other
connection has committed since we last asked (PRAGMA data_version), so the broker runs its query
only then (and at least once a second, for tasks whose lock expired). Enqueued work is seen within
one poll, at a fraction of the cost.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import connections
from django_q.brokers.orm import ORM
from django_q.conf import Conf

FULL_CHECK_SECONDS = 1.0


class SQLiteWatchingORM(ORM):
    def __init__(self, list_key: str | None = None) -> None:
        super().__init__(list_key)
        self._seen_version: int | None = None
        self._checked_at = 0.0

    def dequeue(self) -> Any:
        version = self._data_version()
        if version == self._seen_version and time.monotonic() - self._checked_at < FULL_CHECK_SECONDS:
            time.sleep(Conf.POLL)
            return None
        self._seen_version, self._checked_at = version, time.monotonic()
        tasks = super().dequeue()
        if tasks:
            self._seen_version = None  # more may be waiting: look again at once
        return tasks

    @staticmethod
    def _data_version() -> int:
        with connections[Conf.ORM].cursor() as cursor:
            cursor.execute("PRAGMA data_version")
            return int(cursor.fetchone()[0])
