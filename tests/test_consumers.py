"""The execution page's websocket consumer, through Channels' communicator and the real ASGI app."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from executions import services
from executions.models import Environment, Execution
from takoweb.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def run_async(coroutine: Any) -> Any:
    """Run in a thread of its own: other tests (Playwright) may leave this one's loop running."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # re-raised in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=60)
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _cookie(user: User | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if user is not None:
        client = Client()
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return headers


def _execution(user: User | None, **fields: Any) -> Execution:
    environment = Environment.objects.get(name="default")
    execution = services.execution_create(code="print(1)", input_data={}, environment=environment, submitted_by=user)
    Execution.objects.filter(pk=execution.pk).update(**fields)
    return Execution.objects.get(pk=execution.pk)


def _communicator(execution_id: Any, headers: list[tuple[bytes, bytes]]) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, f"/ws/executions/{execution_id}/", headers=headers)


@pytest.fixture
def owner() -> User:
    return User.objects.create_user("owner", password="pw-for-tests-only")


def test_it_catches_up_then_streams_then_ends(owner: User) -> None:
    execution = _execution(owner, status="running", stdout="one\n")
    headers = _cookie(owner)

    async def scenario() -> list[str]:
        communicator = _communicator(execution.pk, headers)
        connected, _ = await communicator.connect()
        assert connected
        messages = [await communicator.receive_from(timeout=5)]
        await asyncio.to_thread(Execution.objects.filter(pk=execution.pk).update, stdout="one\ntwo <b>\n")
        messages.append(await communicator.receive_from(timeout=5))
        await asyncio.to_thread(
            Execution.objects.filter(pk=execution.pk).update, status="succeeded", stdout="one\ntwo <b>\nthree\n"
        )
        messages.append(await communicator.receive_from(timeout=5))
        closed = await communicator.receive_output(timeout=5)
        assert closed["type"] == "websocket.close"
        return messages

    snapshot, appended, final = run_async(scenario())
    assert '<pre id="stdout" hx-swap-oob="innerHTML">one\n</pre>' in snapshot
    assert 'class="badge status-running"' in snapshot
    assert appended == '<pre id="stdout" hx-swap-oob="beforeend">two &lt;b&gt;\n</pre>'  # only the new text, escaped
    assert '<pre id="stdout" hx-swap-oob="beforeend">three\n</pre>' in final
    assert 'id="result"' in final and "status-succeeded" in final


def test_the_page_shows_the_truncation_marker_as_the_run_monitor_stores_it(owner: User) -> None:
    execution = _execution(owner, status="running", stdout="x" * 10)
    headers = _cookie(owner)
    marker = "\n[TRUNCATED: output exceeded 65536 bytes]"

    async def scenario() -> str:
        communicator = _communicator(execution.pk, headers)
        await communicator.connect()
        await communicator.receive_from(timeout=5)
        # As the run monitor writes a stream passing the cap (services/runs.py), the job still running.
        await asyncio.to_thread(
            Execution.objects.filter(pk=execution.pk).update, stdout="x" * 10 + marker, stdout_truncated=True
        )
        message = await communicator.receive_from(timeout=5)
        await communicator.disconnect()
        return message

    assert run_async(scenario()) == f'<pre id="stdout" hx-swap-oob="beforeend">{marker}</pre>'


def test_a_reconnect_replaces_the_text_instead_of_repeating_it(owner: User) -> None:
    execution = _execution(owner, status="running", stdout="a\nb\n")
    headers = _cookie(owner)

    async def connect_once() -> str:
        communicator = _communicator(execution.pk, headers)
        await communicator.connect()
        message = await communicator.receive_from(timeout=5)
        await communicator.disconnect()
        return message

    first = run_async(connect_once())
    Execution.objects.filter(pk=execution.pk).update(stdout="a\nb\nc\n")
    second = run_async(connect_once())
    assert '<pre id="stdout" hx-swap-oob="innerHTML">a\nb\n</pre>' in first
    assert '<pre id="stdout" hx-swap-oob="innerHTML">a\nb\nc\n</pre>' in second


@pytest.mark.parametrize(
    ("who", "message"),
    [
        ("stranger", "This execution belongs to another user."),
        ("anonymous", "Your session has expired; log in again to follow this execution."),
        ("missing", "There is no such execution."),
    ],
)
def test_it_refuses_with_a_clear_message(owner: User, who: str, message: str) -> None:
    execution = _execution(owner, status="running")
    user = None if who == "anonymous" else owner if who == "missing" else User.objects.create_user("x", password="p")
    target = "00000000-0000-4000-8000-000000000000" if who == "missing" else execution.pk
    headers = _cookie(user)

    async def scenario() -> tuple[str, dict]:
        communicator = _communicator(target, headers)
        await communicator.connect()
        text = await communicator.receive_from(timeout=5)
        return text, await communicator.receive_output(timeout=5)

    text, closed = run_async(scenario())
    assert message in text and 'id="live-error"' in text
    assert closed == {"type": "websocket.close", "code": 4403}


def test_staff_can_follow_anyones_execution(owner: User) -> None:
    execution = _execution(owner, status="running", stdout="x\n")
    admin = User.objects.create_user("admin2", password="p", is_staff=True)
    headers = _cookie(admin)

    async def scenario() -> str:
        communicator = _communicator(execution.pk, headers)
        await communicator.connect()
        return await communicator.receive_from(timeout=5)

    assert "x\n</pre>" in run_async(scenario())
