"""GET /jobs/{id}/events: a job's status and output as server-sent events, for scripts.

Fed by live.py, the event source of the execution page's websocket. Each event's id is the
position after it: how much of stdout and of stderr has been sent, and the last status sent
(`<stdout chars>-<stderr chars>-<status>`, `…-end` for the last event), then which streams were
told truncated, if any (`…-t:stdout,stderr`). A client reconnecting with `Last-Event-ID` gets
what follows that position, so no line is repeated or lost; after `end` it gets 204, which tells
an EventSource to stop reconnecting.

A stream that passes the output cap stops there: its text (as the record's) ends with the
sandbox's marker, `[TRUNCATED: output exceeded N bytes]`, sent as the run monitor stores it, and
a `truncated` event (`{"stream": "stdout"}`) follows at once, which no program can print.

Django answers the request (authentication, visibility, 401/404, the usual headers) and, when
the stream may start, says so in a header that EventStreams, the ASGI layer in front of Django,
takes away before it streams the events itself. So a stream outlives Django's handling of its
request: Django keeps a thread for each request it handles until the response's last byte (its
middleware runs in one), which for event streams would be a thread per open stream. Here a stream
is a coroutine on daphne's loop, and its reads of the row share the loop's small thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from executions import live
from executions.api.auth import EXECUTE
from executions.api.jobs import _job_or_404
from executions.api.routing import Router
from executions.api.schemas import Error
from executions.models import Execution

router = Router(auth=EXECUTE, tags=["jobs"])

KEEPALIVE_SECONDS = 15  # a comment line now and then keeps proxies from closing an idle stream
EVENT_ID_RE = re.compile(r"^(\d{1,12})-(\d{1,12})-([a-z_]{1,16})(?:-t:(stdout|stderr|stdout,stderr))?$")
STREAMS = ("stdout", "stderr")


@dataclass
class Cursor:
    """How far a client has got: characters of each stream, the last status (or `end`)."""

    stdout: int = 0
    stderr: int = 0
    sent: str = ""  # the last status sent, or `end`
    truncated: tuple[str, ...] = ()  # the streams a `truncated` event was sent for, in STREAMS order

    @classmethod
    def parse(cls, value: str | None) -> Cursor:
        """From Last-Event-ID; anything else than an id this service made starts from the beginning."""
        found = EVENT_ID_RE.match((value or "").strip())
        if found is None:
            return cls()
        return cls(int(found[1]), int(found[2]), found[3], tuple(found[4].split(",")) if found[4] else ())

    @property
    def ended(self) -> bool:
        return self.sent == "end"

    def __str__(self) -> str:
        told = f"-t:{','.join(self.truncated)}" if self.truncated else ""
        return f"{self.stdout}-{self.stderr}-{self.sent}{told}"


def _event(kind: str, data: Any, cursor: Cursor) -> str:
    return f"id: {cursor}\nevent: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def events_since(execution: Execution, cursor: Cursor) -> list[str]:
    """The events that bring a client at `cursor` up to `execution` as stored; moves `cursor`.
    A terminal status comes after the last output, then `end`."""
    events = []
    if not execution.is_terminal:
        events += _status(execution, cursor)
    for stream in STREAMS:
        text = getattr(execution, stream)
        sent = getattr(cursor, stream)
        if len(text) > sent:
            setattr(cursor, stream, len(text))
            events.append(_event(stream, text[sent:], cursor))
        if getattr(execution, f"{stream}_truncated") and stream not in cursor.truncated:
            cursor.truncated = tuple(s for s in STREAMS if s in cursor.truncated or s == stream)
            events.append(_event("truncated", {"stream": stream}, cursor))
    if execution.is_terminal:
        events += _status(execution, cursor)
        cursor.sent = "end"
        events.append(_event("end", execution.to_dict(), cursor))
    return events


def _status(execution: Execution, cursor: Cursor) -> list[str]:
    if execution.status == cursor.sent:
        return []
    cursor.sent = execution.status
    return [_event("status", {"status": execution.status}, cursor)]


async def event_stream(execution_id: UUID, cursor: Cursor) -> AsyncIterator[str]:
    """Events from `cursor` until the job's end, as live.py's watcher reads the row."""
    async with live.following(execution_id) as follower:
        while True:
            try:
                execution = await asyncio.wait_for(follower.changed(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            for event in events_since(execution, cursor):
                yield event
            if cursor.ended:
                return


@router.api_operation(
    ["GET", "HEAD"],
    "/jobs/{uuid:job_id}/events",
    response={200: None, 204: None, 404: Error},
    summary="A job's status and output as server-sent events, until it ends (resumable with Last-Event-ID)",
    openapi_extra={
        "responses": {
            200: {
                "description": 'text/event-stream: `status` ({"status"}) on each change, `stdout` and `stderr` '
                '(the text as printed, a JSON string), `truncated` ({"stream"}) once a stream passed the output '
                "cap (its text then ends with the marker the record's does), last `end` (the execution record); "
                "every event has an id",
                # Each event of the stream (as OpenAPI 3.2's itemSchema means it; Schemathesis checks it).
                "content": {
                    "text/event-stream": {
                        "schema": {
                            "type": "object",
                            "required": ["id", "event", "data"],
                            "properties": {
                                "id": {
                                    "type": "string",
                                    "description": "<stdout chars>-<stderr chars>-<status>[-t:<streams truncated>]",
                                },
                                "event": {"enum": ["status", "stdout", "stderr", "truncated", "end"]},
                                "data": {"type": "string", "description": "JSON"},
                            },
                        }
                    }
                },
            },
            204: {"description": "Last-Event-ID names the `end` event: nothing follows"},
        }
    },
)
async def job_events(request: HttpRequest, job_id: UUID) -> HttpResponseBase:
    """Same visibility as GET /jobs/{id}. A job that has ended gets its whole output and `end` at once."""
    await sync_to_async(_job_or_404)(request, job_id)
    cursor = Cursor.parse(request.headers.get("Last-Event-ID"))
    if cursor.ended:
        return HttpResponse(status=204)
    response = HttpResponse(content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy in front must pass each event on at once
    if request.method == "GET":
        response[STREAM_HEADER] = f"{job_id} {cursor}"  # EventStreams streams it
    return response


# -- the stream, after Django --------------------------------------------------------------------------
STREAM_HEADER = "X-Tako-Event-Stream"
EVENTS_PATH = re.compile(r"^/jobs/[0-9a-fA-F-]{36}/events/?$")


class EventStreams:
    """ASGI: a response of job_events carrying STREAM_HEADER is sent without it, followed by the
    events, until the job's end or the client's going away."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET" or not EVENTS_PATH.match(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}
        marker = STREAM_HEADER.lower().encode()

        async def hold_start(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                found = [value for name, value in message.get("headers", []) if name.lower() == marker]
                if found:
                    headers = [(n, v) for n, v in message["headers"] if n.lower() not in (marker, b"content-length")]
                    held.update(start={**message, "headers": headers}, stream=found[0].decode())
                    return
            if "start" not in held:
                await send(message)

        await self.app(scope, receive, hold_start)
        if "start" in held:
            job_id, cursor = held["stream"].split(" ", 1)
            await send(held["start"])
            await _stream(UUID(job_id), Cursor.parse(cursor), receive, send)


async def _stream(job_id: UUID, cursor: Cursor, receive: Any, send: Any) -> None:
    async def client_gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def events() -> None:
        async for chunk in event_stream(job_id, cursor):
            await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    sending, gone = asyncio.ensure_future(events()), asyncio.ensure_future(client_gone())
    try:
        await asyncio.wait({sending, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sending, gone):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await sending
