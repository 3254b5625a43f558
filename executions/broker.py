"""django-q2's brokers, with two additions:

- A worker host whose Docker engine is failing (its breaker open) takes no job while another
  engine works, so the others run them (rather than this host handing them back one by one).
- On SQLite (the embedded default), the ORM broker asks whether any other connection has
  committed since the last poll (PRAGMA data_version, microseconds) before running its query, and
  between polls waits for a commit by another process (commits.py: inotify), at most 10 ms: a new
  task is taken within a millisecond, for a fraction of a percent of a core. It queries at least
  once a second anyway, for tasks whose lock expired.
"""

from __future__ import annotations

import os
import time
from typing import Any

from django.conf import settings
from django.db import connections
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf

from executions.commits import CommitWatch

FULL_CHECK_SECONDS = 1.0


def tasks_commit_with_jobs() -> bool:
    """Whether the queue is the database (the ORM broker): a task enqueued in a transaction is
    committed with it, or not at all."""
    return "redis" not in settings.Q_CLUSTER


GATE_CHECK_SECONDS = 0.5


class EngineGate:
    """Mixed in before a broker: dequeue() takes nothing while this host's engine refuses work."""

    _gate_checked_at = 0.0
    _gate_shut = False

    def engine_refuses(self) -> bool:
        if time.monotonic() - self._gate_checked_at > GATE_CHECK_SECONDS:
            from executions.resilience import another_engine_available, breaker_is_open

            self._gate_shut = breaker_is_open() and another_engine_available()
            self._gate_checked_at = time.monotonic()
        return self._gate_shut

    def dequeue(self) -> Any:
        if self.engine_refuses():
            time.sleep(GATE_CHECK_SECONDS)
            return None
        return super().dequeue()  # type: ignore[misc]


class GatedRedis(EngineGate, Redis):
    pass


class GatedORM(EngineGate, ORM):
    pass


class _SQLiteWatching(ORM):
    def __init__(self, list_key: str | None = None) -> None:
        super().__init__(list_key)
        self._seen: tuple[Any, int] | None = None
        self._checked_at = 0.0
        self._watch: tuple[int, CommitWatch] | None = None

    def dequeue(self) -> Any:
        seen = self._data_version()
        if seen == self._seen and time.monotonic() - self._checked_at < FULL_CHECK_SECONDS:
            self._commit_watch().wait(Conf.POLL)  # (woken by another process's commit)
            return None
        self._seen, self._checked_at = seen, time.monotonic()
        tasks = super().dequeue()
        if tasks:
            self._seen = None  # more may be waiting: look again at once
        return tasks

    def _commit_watch(self) -> CommitWatch:
        """This process's (made where it is used: the cluster forks its pusher after making the broker)."""
        if self._watch is None or self._watch[0] != os.getpid():
            self._watch = (os.getpid(), CommitWatch(str(connections[Conf.ORM].settings_dict["NAME"])))
        return self._watch[1]

    @staticmethod
    def _data_version() -> tuple[Any, int]:
        """The connection and its data_version. A version is the connection's own count: one
        from a connection opened since (Django closes old ones) says nothing, and is a change.
        (The connection object itself is kept, not its id, which a new one could reuse.)"""
        connection = connections[Conf.ORM]
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA data_version")
            return connection.connection, int(cursor.fetchone()[0])


class SQLiteWatchingORM(_SQLiteWatching, GatedORM):
    """The jobs' queue on SQLite: the gate, then the watch, then django-q2's ORM broker."""


class SQLiteWatchingUngatedORM(_SQLiteWatching):
    """The webhooks' queue on SQLite: deliveries need no engine, so no gate."""
