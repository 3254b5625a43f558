"""The web server's ASGI handler (takoweb/handlers.py): a request's thread, and the database
connection in it, serve the next request instead of ending with the request."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from django.db import connection

from executions.models import Execution
from takoweb.handlers import RequestThreads, ReusedThreadsASGIHandler

pytestmark = pytest.mark.django_db(transaction=True)  # (the handler's threads read the database themselves)


async def get(handler: ReusedThreadsASGIHandler, path: str, query: str = "") -> tuple[int, dict[str, Any]]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": query.encode(), "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    communicator = ApplicationCommunicator(handler, scope)
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(10)
    body = await communicator.receive_output(10)
    await communicator.wait(10)
    return start["status"], json.loads(body["body"])


def connection_in(executor: Any) -> Any:
    """The open database connection of the thread behind `executor` (None: closed)."""
    return executor.submit(lambda: connection.connection).result(timeout=10)


def is_closed(raw_connection: Any) -> bool:
    try:
        raw_connection.cursor().execute("SELECT 1")
    except Exception:  # (sqlite3's ProgrammingError, psycopg's InterfaceError: closed)
        return True
    return False


def test_requests_one_after_another_use_one_thread_and_keep_its_connection() -> None:
    handler = ReusedThreadsASGIHandler()
    seen = []
    for _ in range(4):
        status, body = asyncio.run(get(handler, f"/jobs/{uuid.uuid4()}"))  # (a query, then 404)
        assert (status, body["detail"]) == (404, "Job not found")
        [executor] = handler.threads.idle
        seen.append(connection_in(executor))
    assert handler.threads.started == 1
    assert seen[0] is not None
    assert all(kept is seen[0] for kept in seen)  # the same connection, not one opened per request


def test_requests_at_once_get_a_thread_each_and_idle_threads_beyond_the_limit_end() -> None:
    queued = Execution.objects.create(code="print(1)", job_type="default", timeout=10)
    handler = ReusedThreadsASGIHandler()
    handler.threads.keep_idle = 2

    async def three_waiting_at_once() -> list[tuple[int, dict[str, Any]]]:
        waits = [get(handler, f"/jobs/{queued.pk}/result", "wait=true&timeout=1") for _ in range(3)]
        return await asyncio.gather(*waits)

    answers = asyncio.run(three_waiting_at_once())
    assert [status for status, _ in answers] == [408, 408, 408]  # (the job stays queued)
    assert handler.threads.started == 3
    assert len(handler.threads.idle) == 2
    assert all(connection_in(executor) is not None for executor in handler.threads.idle)
    # The next request takes an idle thread rather than starting one.
    assert asyncio.run(get(handler, f"/jobs/{queued.pk}"))[0] == 200
    assert handler.threads.started == 3


def test_a_thread_given_back_beyond_the_idle_limit_closes_its_connection_and_ends() -> None:
    threads = RequestThreads(keep_idle=1)
    executors = [threads.borrow() for _ in range(2)]
    opened = [
        executor.submit(lambda: (connection.ensure_connection(), connection.connection)[1]).result()
        for executor in executors
    ]
    for executor in executors:
        threads.give_back(executor)
    assert threads.idle == [executors[0]]
    executors[1].shutdown(wait=True)  # (already shut down: this waits for its last call, the close)
    with pytest.raises(RuntimeError):
        executors[1].submit(print)
    assert is_closed(opened[1])
    assert not is_closed(opened[0])  # the idle one's is kept open


def test_a_thread_still_running_a_cancelled_requests_call_is_not_lent_again() -> None:
    """(the next request would wait for that call)"""
    threads = RequestThreads()
    busy = threads.borrow()
    release = threading.Event()
    busy.submit(release.wait, 10)  # a call its request, cancelled, no longer waits for
    threads.give_back(busy)
    assert threads.idle == []
    other = threads.borrow()
    assert other is not busy and threads.started == 2
    assert other.submit(lambda: "at once").result(timeout=1) == "at once"
    release.set()
    busy.shutdown(wait=True)  # (it ends once its call is done)
    with pytest.raises(RuntimeError):
        busy.submit(print)
