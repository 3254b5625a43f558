"""Async jobs wait out an outage of every engine (up to TAKO_OUTAGE_GRACE), queued; sync runs and
jobs past the grace end service_unavailable, the latter saying how long they waited. Unit tier:
the engine is a FakeSandbox that is down."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from executions.models import DeadLetter, Environment, Execution
from executions.sandbox.fake import FakeSandbox
from executions.services import execution_run
from executions.services.submissions import execution_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def engine_down(settings) -> FakeSandbox:
    settings.TAKO_RETRY_ATTEMPTS = 1
    settings.TAKO_OUTAGE_GRACE = 300
    sandbox = FakeSandbox()
    sandbox.available = False
    return sandbox


def queued(*, is_async: bool) -> Execution:
    return execution_create(
        code="print(1)", input_data={}, environment=Environment.objects.get(name="default"), is_async=is_async
    )


def test_an_async_job_waits_for_an_engine_queued(engine_down: FakeSandbox) -> None:
    execution = execution_run(execution_id=queued(is_async=True).pk, sandbox=engine_down, role="worker")
    assert execution.status == Execution.Status.QUEUED and execution.engine_wait_since is not None
    assert not DeadLetter.objects.filter(execution=execution).exists()
    first_wait = execution.engine_wait_since
    again = execution_run(execution_id=execution.pk, sandbox=engine_down, role="worker")
    assert again.status == Execution.Status.QUEUED and again.engine_wait_since == first_wait  # counted once


def test_past_the_grace_it_ends_service_unavailable_saying_how_long_it_waited(engine_down: FakeSandbox) -> None:
    execution = queued(is_async=True)
    Execution.objects.filter(pk=execution.pk).update(engine_wait_since=timezone.now() - timedelta(seconds=301))
    ended = execution_run(execution_id=execution.pk, sandbox=engine_down, role="worker")
    assert (ended.status, ended.error_type) == (Execution.Status.FAILED, "service_unavailable")
    assert "waited 301 s for an engine" in ended.error_message and "TAKO_OUTAGE_GRACE is 300 s" in ended.error_message
    assert DeadLetter.objects.filter(execution=ended, error_type="service_unavailable").exists()


def test_a_sync_run_still_fails_at_once(engine_down: FakeSandbox) -> None:
    ended = execution_run(execution_id=queued(is_async=False).pk, sandbox=engine_down, role="web")
    assert (ended.status, ended.error_type) == (Execution.Status.FAILED, "service_unavailable")
    assert ended.engine_wait_since is None


def test_with_no_grace_an_async_job_does_not_wait(engine_down: FakeSandbox, settings) -> None:
    settings.TAKO_OUTAGE_GRACE = 0
    ended = execution_run(execution_id=queued(is_async=True).pk, sandbox=engine_down, role="worker")
    assert (ended.status, ended.error_type) == (Execution.Status.FAILED, "service_unavailable")


def test_the_engine_back_runs_the_waiting_job(engine_down: FakeSandbox) -> None:
    waiting = execution_run(execution_id=queued(is_async=True).pk, sandbox=engine_down, role="worker")
    engine_down.available = True
    ran = execution_run(execution_id=waiting.pk, sandbox=engine_down, role="worker")
    assert (ran.status, ran.stdout) == (Execution.Status.SUCCEEDED, "1\n")
