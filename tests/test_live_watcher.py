"""The web process's watcher (executions/live.py): requests waiting for jobs to end, and pages
following them, are woken by one look for all of them."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from executions import live, services
from executions.models import Environment, Execution
from tests.support import wait_for


def _job() -> Execution:
    environment = Environment.objects.get(name="default")
    return services.execution_create(code="print(1)", input_data={}, environment=environment)


def _end_later(execution: Execution, seconds: float) -> threading.Thread:
    """End the job from another connection, committed, as a worker would."""

    def end() -> None:
        try:
            threading.Event().wait(seconds)
            Execution.objects.filter(pk=execution.pk).update(status="succeeded", ended_at=timezone.now())
        finally:
            connection.close()

    thread = threading.Thread(target=end)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_waiters_are_woken_by_their_own_jobs_end_and_the_others_time_out(monkeypatch: pytest.MonkeyPatch) -> None:
    looks: list[int] = []
    versions = live._versions
    monkeypatch.setattr(live, "_versions", lambda ids: looks.append(len(ids)) or versions(ids))
    first, second, never = _job(), _job(), _job()
    enders = [_end_later(first, 0.3), _end_later(second, 0.6)]

    async def wait_all() -> list[Any]:
        return await asyncio.gather(
            live.execution_wait_for_end(first.pk, 10),
            live.execution_wait_for_end(second.pk, 10),
            live.execution_wait_for_end(never.pk, 1.5),
        )

    ended = asyncio.run(wait_all())
    assert [row and (str(row.pk), row.status) for row in ended] == [
        (str(first.pk), "succeeded"),
        (str(second.pk), "succeeded"),
        None,
    ]
    for ender in enders:
        ender.join()
    assert max(looks) == 3, looks  # one look asked about every job waited for
    assert Execution.objects.get(pk=never.pk).status == "queued"


@pytest.mark.django_db(transaction=True)
def test_a_job_that_has_ended_already_is_seen_at_once() -> None:
    job = _job()
    Execution.objects.filter(pk=job.pk).update(status="failed", ended_at=timezone.now())
    row = asyncio.run(live.execution_wait_for_end(job.pk, 0.5))
    assert row is not None and row.status == "failed"


@pytest.mark.django_db(transaction=True)
def test_a_watcher_goes_with_its_event_loop() -> None:
    """Each event loop has its own watcher (a test's loop, not only daphne's); when the loop is
    gone, so is its watcher, and the watcher's thread ends (closing its database connection)."""
    import gc

    job = _job()
    Execution.objects.filter(pk=job.pk).update(status="succeeded", ended_at=timezone.now())

    def watchers() -> set[int]:
        gc.collect()
        return {id(thing) for thing in gc.get_objects() if isinstance(thing, live._Watcher)}

    def watcher_threads() -> set[int]:
        return {thread.ident or 0 for thread in threading.enumerate() if thread.name.startswith("live-watcher")}

    earlier, threads = watchers(), watcher_threads()  # (other tests' loops may still run in this process)
    for _ in range(10):
        assert asyncio.run(live.execution_wait_for_end(job.pk, 1)) is not None
    wait_for(lambda: watchers() <= earlier, timeout=10, what="the watchers of the ended loops to go")
    wait_for(lambda: watcher_threads() <= threads, timeout=10, what="the watchers' threads to end")
