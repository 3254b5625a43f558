"""Following executions as they run: the one event source of the execution page's websocket
(consumers.py) and of the scripts' server-sent events (api/events.py).

What a run prints is stored as it comes (services/runs.py's monitor writes it a few times a
second), so every process can read it. In each web process one watcher looks, in one query per
tick for every execution some page or stream follows, at what changed (status, length of the
streams) and wakes those followers, who then read the row. With a shared channel layer (Redis)
the worker also tells pages at once (notify_execution_changed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DatabaseError, connection, connections
from django.db.models.functions import Length

from executions.commits import CommitWatch
from executions.models import Execution

logger = logging.getLogger(__name__)

WATCH_TICK_SECONDS = 0.15  # output reaches followers within ~0.3 s of the print
# On SQLite the watcher is woken by every commit of another process (commits.py), asks whether
# anything was committed (PRAGMA data_version, a few microseconds) and looks at once when something
# was: an ended job is seen within a millisecond or two. Without inotify it asks this often.
COMMIT_CHECK_SECONDS = 0.002
# Other databases: the look's interval while some request waits for a job to end.
END_TICK_SECONDS = 0.01


def execution_group(execution_id: Any) -> str:
    return f"execution.{execution_id}"


def notify_execution_changed(execution_id: Any) -> None:
    if not settings.REDIS_URL:  # an in-memory layer cannot reach daphne from a worker process
        return
    try:
        async_to_sync(get_channel_layer().group_send)(execution_group(execution_id), {"type": "execution.changed"})
    except Exception:  # live updates are best effort; followers also watch the database
        logger.warning("Could not notify pages about %s", execution_id, exc_info=True)


def _versions(ids: list[str]) -> dict[str, tuple[Any, ...]]:
    """What tells a change, per execution: its status, the length of each stream, whether it passed
    the output cap."""
    rows = (
        Execution.objects.filter(pk__in=ids)
        .annotate(out=Length("stdout"), err=Length("stderr"))
        .values_list("pk", "status", "out", "err", "ended_at", "stdout_truncated", "stderr_truncated")
    )
    return {str(pk): tuple(rest) for pk, *rest in rows}


def _rows(ids: list[str]) -> dict[str, Execution]:
    return {str(row.pk): row for row in Execution.objects.filter(pk__in=ids)}


class Follower:
    """One page, stream or waiting request following an execution: `wake` is set when `execution`
    (the row as last read) has changed."""

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.execution: Execution | None = None

    async def changed(self) -> Execution:
        """The row, once it has changed since the last call (the first call: once it is read)."""
        await self.wake.wait()
        self.wake.clear()
        assert self.execution is not None  # (set before every wake)
        return self.execution


class _Watcher:
    """One per event loop (daphne runs one): one query a look for what changed among every
    followed execution, one more for the rows that did, whoever follows them.

    The reads run in a thread of its own, which keeps one database connection (the web role keeps
    none per request): on SQLite its data_version says whether any connection committed since the
    last look, so the thread waits for a commit, looking at once when there is one and at least
    every WATCH_TICK_SECONDS. Elsewhere it looks every tick (END_TICK_SECONDS while a request waits
    for a job's end)."""

    def __init__(self) -> None:
        self.followers: dict[str, set[Follower]] = defaultdict(set)
        self.seen: dict[str, tuple[Any, ...] | None] = {}
        self.waiting_for_ends = 0
        self.task: asyncio.Task[None] | None = None
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-watcher")
        self.interrupt = threading.Event()  # a newcomer: look now, not at the next commit or tick
        self.commits: tuple[Any, int] | None = None  # (connection, data_version) at the last look
        sqlite = connection.vendor == "sqlite"
        self.commit_watch = CommitWatch(str(connection.settings_dict["NAME"])) if sqlite else None

    def follow(self, execution_id: str) -> Follower:
        follower = Follower()
        self.followers[execution_id].add(follower)
        self.seen.pop(execution_id, None)  # read it for the newcomer at the next look
        self.interrupt.set()
        if self.commit_watch is not None:
            self.commit_watch.wake()
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())
            self.task.add_done_callback(self._ran)
        return follower

    def _ran(self, task: asyncio.Task[None]) -> None:
        if self.task is task:  # (a task holds its loop: kept, it would keep this watcher's loop alive)
            self.task = None

    def unfollow(self, execution_id: str, follower: Follower) -> None:
        followers = self.followers.get(execution_id)
        if followers is not None:
            followers.discard(follower)
            if not followers:
                del self.followers[execution_id]
                self.seen.pop(execution_id, None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self.followers:
            ids = list(self.followers)
            try:
                found = await loop.run_in_executor(self.thread, self._next_look, ids, self.waiting_for_ends > 0)
            except Exception:  # the database away for a moment: look again next tick
                logger.warning("Could not look for changes of %d executions", len(ids), exc_info=True)
                await asyncio.sleep(WATCH_TICK_SECONDS)
                continue
            if found is None:
                continue  # interrupted by a newcomer: look again, with it
            versions, rows = found
            for execution_id, row in rows.items():
                if execution_id not in self.followers:
                    continue  # unfollowed meanwhile
                self.seen[execution_id] = versions[execution_id]
                for follower in self.followers[execution_id]:
                    follower.execution = row
                    follower.wake.set()

    # -- in the watcher's thread --------------------------------------------------------------------
    def _next_look(
        self, ids: list[str], waiting_for_ends: bool
    ) -> tuple[dict[str, tuple[Any, ...]], dict[str, Execution]] | None:
        """Wait for a reason to look (a commit, the tick, a newcomer), then look: the rows of the
        executions that changed since they were last seen. None: a newcomer came first."""
        if not self.interrupt.is_set():
            self._wait_for_a_look(waiting_for_ends)
        if self.interrupt.is_set():
            if any(i not in ids for i in list(self.followers)):
                return None  # (still interrupted: the next call, with the newcomer, looks at once)
            self.interrupt.clear()
        try:
            versions = _versions(ids)
            changed = [i for i in ids if i in versions and self.seen.get(i) != versions[i]]
            return versions, (_rows(changed) if changed else {})
        except DatabaseError:
            connection.close()  # opened afresh at the next look
            raise

    def _wait_for_a_look(self, waiting_for_ends: bool) -> None:
        if self.commit_watch is None:
            self.interrupt.wait(END_TICK_SECONDS if waiting_for_ends else WATCH_TICK_SECONDS)
            return
        deadline = time.monotonic() + WATCH_TICK_SECONDS
        while not self.interrupt.is_set() and (remaining := deadline - time.monotonic()) > 0:
            commits = self._commits()
            if commits != self.commits:
                self.commits = commits
                return
            # Woken by another process's commit (or a newcomer); without inotify, a short sleep.
            self.commit_watch.wait(remaining if self.commit_watch.notified else COMMIT_CHECK_SECONDS)
        self.commits = self._commits()

    @staticmethod
    def _commits() -> tuple[Any, int]:
        """This thread's connection and its data_version (a count of its own: one read on a
        connection opened since is a change)."""
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA data_version")
            return connection.connection, int(cursor.fetchone()[0])


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watcher] = weakref.WeakKeyDictionary()


def _stop_thread(thread: ThreadPoolExecutor) -> None:
    with contextlib.suppress(RuntimeError):  # (the interpreter is ending: its threads are stopped)
        thread.submit(connections.close_all)  # its own database connection, closed in it
    thread.shutdown(wait=False)


def _watcher() -> _Watcher:
    loop = asyncio.get_running_loop()
    if loop not in _watchers:
        watcher = _watchers[loop] = _Watcher()
        # Gone with its loop (daphne's lives as long as the process; a test's does not): its thread,
        # its database connection and its file descriptors go too.
        weakref.finalize(watcher, _stop_thread, watcher.thread)
        if watcher.commit_watch is not None:
            weakref.finalize(watcher, watcher.commit_watch.close)
    return _watchers[loop]


def execution_follow(execution_id: Any) -> Follower:
    """Follow an execution: its follower is woken with the row as soon as the watcher has read
    it (within a tick), then whenever it changes. Unfollow when done."""
    return _watcher().follow(str(execution_id))


def execution_unfollow(execution_id: Any, follower: Follower) -> None:
    _watcher().unfollow(str(execution_id), follower)


@contextlib.asynccontextmanager
async def following(execution_id: Any) -> AsyncIterator[Follower]:
    follower = execution_follow(execution_id)
    try:
        yield follower
    finally:
        execution_unfollow(execution_id, follower)


async def execution_wait_for_end(execution_id: Any, timeout: float) -> Execution | None:
    """The execution's row once it has ended, or None after `timeout` seconds. Many requests wait
    for the price of one query a look (the watcher's)."""
    watcher = _watcher()
    watcher.waiting_for_ends += 1
    try:
        async with following(execution_id) as follower, asyncio.timeout(timeout):
            while (row := await follower.changed()).status not in Execution.TERMINAL:
                pass
            return row
    except TimeoutError:
        return None
    finally:
        watcher.waiting_for_ends -= 1
