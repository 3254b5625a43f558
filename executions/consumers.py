"""The execution page's websocket: stdout/stderr and status, live, as htmx out-of-band swaps.

On every (re)connect it first sends everything stored so far (replacing what the page shows, so
a reconnect never duplicates or drops lines), then what is appended, until the run ends. It
follows the execution through live.py, the event source the server-sent events share; with
Redis the worker also wakes it at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string
from django.utils.html import escape

from executions.live import Follower, execution_follow, execution_group, execution_unfollow
from executions.models import Execution
from executions.selectors import executions_visible_to

STREAMS = ("stdout", "stderr")


def _oob(element_id: str, swap: str, html: str, tag: str = "pre") -> str:
    return f'<{tag} id="{element_id}" hx-swap-oob="{swap}">{html}</{tag}>'


class ExecutionConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.execution_id = str(self.scope["url_route"]["kwargs"]["execution_id"])
        self.sent: dict[str, str | None] = {"stdout": None, "stderr": None}  # None: nothing sent yet
        self.status: str | None = None
        self.follower: Follower | None = None
        await self.accept()
        problem = await self._refusal()
        if problem:
            await self.send(text_data=_oob("live-error", "innerHTML", escape(problem), tag="div"))
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(execution_group(self.execution_id), self.channel_name)
        self.follower = execution_follow(self.execution_id)
        self.poller = asyncio.create_task(self._follow(self.follower))

    async def disconnect(self, code: int) -> None:
        poller = getattr(self, "poller", None)
        if poller is not None:
            poller.cancel()
        if self.follower is not None:
            execution_unfollow(self.execution_id, self.follower)
        await self.channel_layer.group_discard(execution_group(self.execution_id), self.channel_name)

    async def execution_changed(self, event: dict[str, Any]) -> None:
        """The worker's word through Redis: read the row now rather than at the next tick."""
        if self.follower is not None:
            self.follower.execution = await database_sync_to_async(Execution.objects.get)(pk=self.execution_id)
            self.follower.wake.set()

    async def _follow(self, follower: Follower) -> None:
        while True:
            if await self._push(await follower.changed()):
                await self.close()
                return

    @database_sync_to_async
    def _refusal(self) -> str | None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return "Your session has expired; log in again to follow this execution."
        if executions_visible_to(user).filter(pk=self.execution_id).exists():
            return None
        if Execution.objects.filter(pk=self.execution_id).exists():
            return "This execution belongs to another user."
        return "There is no such execution."

    async def _push(self, execution: Execution) -> bool:
        """Send what changed since the last push; True once the execution has ended."""
        message, ended = await self._changes(execution)
        if message:
            await self.send(text_data=message)
        return ended

    @database_sync_to_async
    def _changes(self, execution: Execution) -> tuple[str, bool]:
        parts = []
        for stream in STREAMS:
            stored, sent = getattr(execution, stream), self.sent[stream]
            if sent is not None and stored.startswith(sent):
                if len(stored) > len(sent):
                    parts.append(_oob(stream, "beforeend", escape(stored[len(sent) :])))
            else:  # the first push, or the text was rewritten: replace it all
                parts.append(_oob(stream, "innerHTML", escape(stored)))
            self.sent[stream] = stored
        if execution.status != self.status:
            self.status = execution.status
            context = {"execution": execution}
            parts.append(render_to_string("executions/detail.html#status", context))
            if execution.is_terminal:
                parts.append(render_to_string("executions/detail.html#result", context))
        return "".join(parts), execution.is_terminal
