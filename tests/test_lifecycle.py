"""The lifecycle of a job: claimed, requeued, ended once, by one module, and open pages hear of it."""

from __future__ import annotations

import ast
import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from executions import services
from executions.live import execution_group
from executions.models import DeadLetter, Environment, Execution

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db


class OpenPage:
    """What an execution page's websocket consumer joins: the execution's group on the channel layer."""

    def __init__(self, execution: Execution) -> None:
        self.layer = get_channel_layer()
        self.channel: str = async_to_sync(self.layer.new_channel)()
        async_to_sync(self.layer.group_add)(execution_group(execution.pk), self.channel)

    def messages(self) -> list[dict[str, Any]]:
        async def drain() -> list[dict[str, Any]]:
            received = []
            while True:
                try:
                    received.append(await asyncio.wait_for(self.layer.receive(self.channel), 0.2))
                except TimeoutError:
                    return received

        return async_to_sync(drain)()


@pytest.fixture
def open_pages(settings: Any) -> None:
    """Pages are woken through the channel layer only where it is shared (Redis); the tests'
    in-memory layer stands in for it."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"


def _execution(**fields: Any) -> Execution:
    execution = services.execution_create(
        code="print(1)", input_data={}, environment=Environment.objects.get(name="default"), is_async=True
    )
    if fields:
        Execution.objects.filter(pk=execution.pk).update(**fields)
        execution.refresh_from_db()
    return execution


# -- each way a job ends -----------------------------------------------------------------------------
def test_a_sync_job_ended_by_a_dispatch_failure_gets_its_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A web-only host hands a sync run to the queue; its caller waits, so a queue that is down
    ends it at once."""
    from executions.services import jobs

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(jobs, "async_task", broker_down)
    execution = _execution(is_async=False)
    assert services.execution_dispatch(execution) is False
    execution.refresh_from_db()
    assert (execution.status, execution.error_type) == ("failed", "service_unavailable")
    assert execution.ended_at is not None and execution.total_ms is not None
    assert execution.dead_letters.count() == 1


def test_an_async_job_waits_out_a_queue_outage_and_is_handed_over_once_when_it_returns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from executions.services import jobs

    handed: list[tuple[Any, ...]] = []
    queue = {"up": False}

    def broker(*args: Any, **kwargs: Any) -> None:
        if not queue["up"]:
            raise ConnectionError("broker unreachable")
        handed.append(args)

    monkeypatch.setattr(jobs, "async_task", broker)
    execution = _execution()
    assert services.execution_dispatch(execution) is False
    execution.refresh_from_db()
    assert (execution.status, execution.dispatched_at) == ("queued", None)  # not failed, not dead-lettered
    assert not execution.dead_letters.exists()
    assert services.executions_dispatch_waiting(settled=60) == 0  # just submitted: its submitter's turn
    assert services.executions_dispatch_waiting(settled=0) == 0  # the queue is still down
    execution.refresh_from_db()
    assert (execution.status, execution.dispatched_at) == ("queued", None)
    queue["up"] = True
    assert services.executions_dispatch_waiting(settled=0) == 1
    assert services.executions_dispatch_waiting(settled=0) == 0  # handed over once
    assert handed == [(jobs.RUN_TASK, str(execution.pk))]
    execution.refresh_from_db()
    assert execution.status == "queued" and execution.dispatched_at is not None


def test_an_async_job_whose_queue_stays_down_past_the_grace_ends_saying_how_long_it_waited(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    from executions.services import jobs

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker unreachable")

    settings.TAKO_OUTAGE_GRACE = 60
    monkeypatch.setattr(jobs, "async_task", broker_down)
    execution = _execution(created_at=timezone.now() - timedelta(seconds=90))
    services.execution_dispatch(execution)
    execution.refresh_from_db()
    assert (execution.status, execution.error_type) == ("failed", "service_unavailable")
    assert "waited 90 s" in execution.error_message and "TAKO_OUTAGE_GRACE" in execution.error_message
    assert execution.dead_letters.count() == 1


def test_cancelling_a_queued_job_notifies_its_open_pages(open_pages: None) -> None:
    execution = _execution()
    page = OpenPage(execution)
    services.execution_cancel(execution)
    assert execution.status == "cancelled" and execution.total_ms is not None
    assert page.messages() == [{"type": "execution.changed"}]


def test_the_recovery_sweeps_ending_notifies_open_pages(open_pages: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from executions.services import jobs

    stopped: list[str] = []

    class Sandbox:
        def stop(self, execution_id: str) -> None:
            stopped.append(execution_id)

    monkeypatch.setattr(jobs, "get_sandbox", Sandbox)
    stale = timezone.now() - timedelta(minutes=5)
    execution = _execution(status="running", worker="gone:worker", heartbeat_at=stale, container_started_at=stale)
    page = OpenPage(execution)
    assert services.executions_recover(stale_after=30) == 1
    execution.refresh_from_db()
    assert (execution.status, execution.error_type) == ("failed", "internal_error")
    assert execution.total_ms is not None and stopped == [str(execution.pk)]
    assert page.messages() == [{"type": "execution.changed"}]
    assert execution.dead_letters.count() == 1


def test_a_sync_run_whose_web_process_died_ends_and_is_not_run_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sync run records no container start (one statement fewer on the hot path): its caller's
    connection died with the process, so recovery ends it rather than running it again later."""
    from executions.services import jobs

    monkeypatch.setattr(jobs, "get_sandbox", lambda: type("Sandbox", (), {"stop": lambda self, pk: None})())
    dispatched: list[str] = []
    monkeypatch.setattr(jobs, "execution_dispatch", lambda execution, **_: dispatched.append(str(execution.pk)))
    stale = timezone.now() - timedelta(minutes=5)
    execution = services.execution_create(
        code="print(1)", input_data={}, environment=Environment.objects.get(name="default"), is_async=False
    )
    Execution.objects.filter(pk=execution.pk).update(status="running", worker="gone:web:41", heartbeat_at=stale)
    assert services.executions_recover(stale_after=30) == 1
    execution.refresh_from_db()
    assert (execution.status, execution.error_type) == ("failed", "internal_error")
    assert "web process running this request (gone:web:41)" in execution.error_message and dispatched == []


def test_ending_twice_is_a_no_op_the_second_time(open_pages: None) -> None:
    from executions.sandbox.classify import failure
    from executions.services import lifecycle

    execution = _execution(status="running", started_at=timezone.now())
    page = OpenPage(execution)
    assert lifecycle.end(execution, failure("internal_error", "the worker went away"))
    assert not lifecycle.end(execution, failure("timeout", "too late"))
    execution.refresh_from_db()
    assert (execution.status, execution.error_type, execution.error_message) == (
        "failed",
        "internal_error",
        "the worker went away",
    )
    assert DeadLetter.objects.filter(execution=execution).count() == 1
    assert page.messages() == [{"type": "execution.changed"}]  # one ending, one notification


def test_a_cancelled_job_cannot_be_ended_again_by_its_late_dispatch_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    from executions.services import jobs

    execution = _execution()
    services.execution_cancel(execution)

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(jobs, "async_task", broker_down)
    services.execution_dispatch(execution)
    execution.refresh_from_db()
    assert execution.status == "cancelled" and not execution.dead_letters.exists()


def test_a_claim_and_a_requeue_move_a_job_between_queued_and_running() -> None:
    from executions.services import lifecycle

    execution = _execution()
    assert lifecycle.claim(execution, worker="host:worker")
    assert not lifecycle.claim(execution, worker="other:worker")  # claimed once
    execution.refresh_from_db()
    assert (execution.status, execution.worker) == ("running", "host:worker")
    assert lifecycle.requeue(execution)
    assert not lifecycle.requeue(execution)
    execution.refresh_from_db()
    assert (execution.status, execution.worker, execution.started_at) == ("queued", "", None)


# -- one module writes how a job ends ------------------------------------------------------------
def _sources() -> list[Path]:
    return [
        path
        for path in sorted((ROOT / "executions").rglob("*.py"))
        if "migrations" not in path.parts and path.name != "lifecycle.py"
    ]


def _status_writes(tree: ast.AST) -> list[int]:
    """Lines that write an execution's status or its end: `.update(status=…)`, `.update(ended_at=…)`,
    `x.status = …` (but a consumer's own `self.status`), `save(update_fields=[…"status"…])`."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            names = {keyword.arg for keyword in node.keywords}
            if node.func.attr == "update" and names & {"status", "ended_at", "total_ms"}:
                lines.append(node.lineno)
            if node.func.attr == "save":
                for keyword in node.keywords:
                    if keyword.arg == "update_fields" and "status" in ast.unparse(keyword.value):
                        lines.append(node.lineno)
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr in ("status", "ended_at")
                    and not (isinstance(target.value, ast.Name) and target.value.id == "self")
                ):
                    lines.append(node.lineno)
    return sorted(set(lines))


def test_only_lifecycle_writes_a_jobs_status() -> None:
    found = []
    for path in _sources():
        source = path.read_text()
        for line in _status_writes(ast.parse(source)):
            found.append(f"{path.relative_to(ROOT)}:{line}: {source.splitlines()[line - 1].strip()}")
    assert found == [], "status written outside services/lifecycle.py:\n" + "\n".join(found)


def test_the_check_would_see_a_terminal_write() -> None:
    sample = (
        "Execution.objects.filter(pk=1).update(status=Execution.Status.FAILED, ended_at=now)\n"
        "execution.status = 'cancelled'\n"
        "execution.save(update_fields=['status', 'ended_at'])\n"
        "self.status = execution.status\n"
    )
    assert _status_writes(ast.parse(sample)) == [1, 2, 3]


def test_the_services_import_one_another_without_a_circle() -> None:
    folder = ROOT / "executions" / "services"
    modules = {path.stem for path in folder.glob("*.py") if path.stem != "__init__"}
    imports: dict[str, set[str]] = {}
    for name in modules:
        tree = ast.parse((folder / f"{name}.py").read_text())
        imports[name] = {
            node.module.rsplit(".", 1)[-1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("executions.services.")
        }

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for step in imports.get(start, set()):
            if step == goal or (step not in seen and reaches(step, goal, seen | {step})):
                return True
        return False

    circles = sorted(name for name in modules if reaches(name, name, {name}))
    assert circles == [], f"modules in an import circle: {circles}"
