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
import weakref
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections
from django.db.models.functions import Length

from executions.models import Execution

logger = logging.getLogger(__name__)

WATCH_TICK_SECONDS = 0.15  # output reaches followers within ~0.3 s of the print


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
    close_old_connections()
    rows = (
        Execution.objects.filter(pk__in=ids)
        .annotate(out=Length("stdout"), err=Length("stderr"))
        .values_list("pk", "status", "out", "err", "ended_at", "stdout_truncated", "stderr_truncated")
    )
    return {str(pk): tuple(rest) for pk, *rest in rows}


def _rows(ids: list[str]) -> dict[str, Execution]:
    return {str(row.pk): row for row in Execution.objects.filter(pk__in=ids)}


class Follower:
    """One page or stream following an execution: `wake` is set when `execution` (the row as
    last read) has changed."""

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
    """One per event loop (daphne runs one): one query a tick for what changed among every
    followed execution, one more for the rows that did, whoever follows them."""

    def __init__(self) -> None:
        self.followers: dict[str, set[Follower]] = defaultdict(set)
        self.seen: dict[str, tuple[Any, ...] | None] = {}
        self.task: asyncio.Task[None] | None = None

    def follow(self, execution_id: str) -> Follower:
        follower = Follower()
        self.followers[execution_id].add(follower)
        self.seen.pop(execution_id, None)  # read it for the newcomer at the next tick
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())
        return follower

    def unfollow(self, execution_id: str, follower: Follower) -> None:
        followers = self.followers.get(execution_id)
        if followers is not None:
            followers.discard(follower)
            if not followers:
                del self.followers[execution_id]
                self.seen.pop(execution_id, None)

    async def _run(self) -> None:
        while self.followers:
            try:
                await self._look(list(self.followers))
            except Exception:  # the database away for a moment: look again next tick
                logger.warning("Could not look for changes of %d executions", len(self.followers), exc_info=True)
            await asyncio.sleep(WATCH_TICK_SECONDS)

    async def _look(self, ids: list[str]) -> None:
        # The reads in a thread of the loop's small pool (not one per follower); the rest on the loop.
        versions = await sync_to_async(_versions, thread_sensitive=False)(ids)
        changed = [i for i in ids if i in versions and self.seen.get(i) != versions[i]]
        if not changed:
            return
        rows = await sync_to_async(_rows, thread_sensitive=False)(changed)
        for execution_id in changed:
            if execution_id not in rows:
                continue
            self.seen[execution_id] = versions[execution_id]
            for follower in self.followers.get(execution_id, ()):
                follower.execution = rows[execution_id]
                follower.wake.set()


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watcher] = weakref.WeakKeyDictionary()


def _watcher() -> _Watcher:
    loop = asyncio.get_running_loop()
    if loop not in _watchers:
        _watchers[loop] = _Watcher()
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
