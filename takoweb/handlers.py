"""Django's ASGI handler, with its requests' threads kept for the next request.

Django runs each request in a ThreadSensitiveContext of its own: the request's first synchronous
call (a middleware hook, the view, the ORM) starts a thread, which ends with the request, and with
the thread goes its database connection. So every request paid for a thread and a connection
(about a millisecond of CPU together, a good part of a small API call), and persistent connections
could not be used: Django's docs advise against them under ASGI, as a thread's connection outlives
the request only to be lost with the thread.

Here a request borrows a single-thread executor from a free list and gives it back when it ends
(asgiref's ThreadSensitiveContext takes an executor it does not shut down). Each thread serves one
request at a time, as before, and keeps its connection between requests; Django's per-request
clean-up (close_old_connections, at the request's start and end, in that thread) still closes
one that is broken or too old (CONN_MAX_AGE). At most KEEP_IDLE_THREADS wait idle; beyond that,
or while a cancelled request's call still runs in it, a returned thread closes its connections
and ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler
from django.db import connections

KEEP_IDLE_THREADS = 8

T = TypeVar("T")


class RequestThread(ThreadPoolExecutor):
    """One thread, which knows whether a call is still running or waiting in it."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="request")
        self._calls = 0
        self._calls_lock = threading.Lock()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self._calls_lock:
            self._calls += 1
        future = super().submit(fn, *args, **kwargs)
        # (added before run_in_executor adds its own: the count is down before the loop hears of the end)
        future.add_done_callback(self._call_done)
        return future

    def _call_done(self, _: Future[Any]) -> None:
        with self._calls_lock:
            self._calls -= 1

    @property
    def busy(self) -> bool:
        with self._calls_lock:
            return self._calls > 0

    def end(self) -> None:
        """Once its calls are done: its own connections closed, in it, and the thread gone."""
        self.submit(connections.close_all)
        self.shutdown(wait=False)


class RequestThreads:
    """The free list. Used from the event loop only."""

    def __init__(self, keep_idle: int = KEEP_IDLE_THREADS) -> None:
        self.keep_idle = keep_idle
        self.idle: list[RequestThread] = []
        self.started = 0  # (threads made, for the tests)

    def borrow(self) -> RequestThread:
        if self.idle:
            return self.idle.pop()  # the most recently used: its caches are warm
        self.started += 1
        return RequestThread()

    def give_back(self, thread: RequestThread) -> None:
        # A request cancelled (its client gone) may leave a call running in its thread: the next
        # request would wait for it, so that thread ends after it instead, as Django's would.
        if thread.busy or len(self.idle) >= self.keep_idle:
            thread.end()
        else:
            self.idle.append(thread)


class ReusedThreadsASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self.threads = RequestThreads()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        thread = self.threads.borrow()
        try:
            async with ThreadSensitiveContext(executor=thread):
                await self.handle(scope, receive, send)
        finally:
            self.threads.give_back(thread)
