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
one that is broken or too old (CONN_MAX_AGE). At most KEEP_IDLE_THREADS wait idle; beyond that a
returned thread closes its connections and ends.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler
from django.db import connections

KEEP_IDLE_THREADS = 8


class RequestThreads:
    """The free list. Used from the event loop only, so it needs no lock."""

    def __init__(self, keep_idle: int = KEEP_IDLE_THREADS) -> None:
        self.keep_idle = keep_idle
        self.idle: list[ThreadPoolExecutor] = []
        self.started = 0  # (threads made, for the tests)

    def borrow(self) -> ThreadPoolExecutor:
        if self.idle:
            return self.idle.pop()  # the most recently used: its caches are warm
        self.started += 1
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        if len(self.idle) < self.keep_idle:
            self.idle.append(executor)
            return
        executor.submit(connections.close_all)  # (its own connections, closed in its thread)
        executor.shutdown(wait=False)


class ReusedThreadsASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self.threads = RequestThreads()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self.threads.borrow()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            # A call of a request that was cancelled may still be running in it: the next request
            # that borrows it queues behind that call, one at a time, as a request's calls always do.
            self.threads.give_back(executor)
