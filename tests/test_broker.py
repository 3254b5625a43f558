"""The jobs' queue on SQLite (executions/broker.py): the consumer looks for tasks only when another
connection has committed, and never misses one."""

from __future__ import annotations

from datetime import timedelta

from django.db import connections
from django.utils import timezone
from django_q.models import OrmQ

from executions.broker import SQLiteWatchingUngatedORM


def test_a_task_committed_while_the_consumer_changed_connections_is_found(transactional_db, monkeypatch) -> None:
    """Django closes an old connection before a look at the queue (CONN_MAX_AGE); the new one's
    data_version counts from scratch and may equal the last one seen. That must not hide a task."""
    monkeypatch.setattr("executions.broker.FULL_CHECK_SECONDS", 3600)  # only the watch may find it
    broker = SQLiteWatchingUngatedORM(list_key="watch-test")
    assert broker.dequeue() is None  # looked: nothing
    assert broker.dequeue() is None  # nothing committed elsewhere: no look
    OrmQ.objects.create(key="watch-test", payload="x", lock=timezone.now() - timedelta(seconds=1))
    connections["default"].close()  # as close_old_connections does; the next look opens another
    tasks = broker.dequeue()
    assert tasks is not None and [payload for _, payload in tasks] == ["x"]


def test_the_worker_keeps_its_sqlite_connection(settings) -> None:
    """Workers keep their connections (the web does not, under ASGI): with a new connection for
    each look at the queue, a look costs a connect, and its data_version restarts."""
    assert settings.TAKO_PROCESS_ROLE == "worker"
    assert settings.DATABASES["default"]["CONN_MAX_AGE"] == 60
