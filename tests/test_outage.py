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


def test_while_the_breaker_refuses_a_worker_holds_the_job_queued_without_claiming_it(settings, monkeypatch) -> None:
    """Every engine failing, the task does not claim the job (its status never flickers to
    running); it marks the wait once, pauses and hands the job to the queue again."""
    from executions import tasks
    from executions.models import CircuitBreaker
    from executions.resilience import this_engine

    settings.TAKO_OUTAGE_GRACE = 300
    CircuitBreaker.objects.update_or_create(
        name=this_engine(), defaults={"state": CircuitBreaker.State.OPEN, "opened_at": timezone.now()}
    )
    dispatched: list[tuple[str, int]] = []
    monkeypatch.setattr(tasks.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(
        tasks.services, "execution_dispatch", lambda execution, hops=0: dispatched.append((str(execution.pk), hops))
    )
    job = queued(is_async=True)
    tasks.run_execution(str(job.pk))
    job.refresh_from_db()
    assert (job.status, job.started_at, job.worker) == (Execution.Status.QUEUED, None, "")
    assert job.engine_wait_since is not None and dispatched == [(str(job.pk), 0)]

    # Past the grace it is no longer held: it runs and ends service_unavailable, dead-lettered.
    Execution.objects.filter(pk=job.pk).update(engine_wait_since=timezone.now() - timedelta(seconds=301))
    tasks.run_execution(str(job.pk))
    job.refresh_from_db()
    assert (job.status, job.error_type) == (Execution.Status.FAILED, "service_unavailable")
    assert DeadLetter.objects.filter(execution=job).exists() and len(dispatched) == 1


def test_a_half_open_breaker_without_a_probe_in_flight_lets_a_job_be_the_probe(settings) -> None:
    from executions.models import CircuitBreaker
    from executions.resilience import breaker_refuses, this_engine

    opened = timezone.now() - timedelta(seconds=settings.TAKO_BREAKER_RESET_SECONDS + 1)
    breaker, _ = CircuitBreaker.objects.update_or_create(
        name=this_engine(), defaults={"state": CircuitBreaker.State.OPEN, "opened_at": opened}
    )
    assert not breaker_refuses()  # due to reset: the next run probes
    breaker.state, breaker.probe_started_at = CircuitBreaker.State.HALF_OPEN, timezone.now()
    breaker.save()
    assert breaker_refuses()  # a probe is in flight


def test_a_failing_runtime_opens_its_own_breaker_and_other_job_types_go_on(settings) -> None:
    """gVisor failing on an engine (say runsc was removed) stops the job types under runsc only."""
    from executions.models import CircuitBreaker
    from executions.resilience import breaker_name, breaker_state
    from executions.sandbox import SandboxUnavailable

    settings.TAKO_RETRY_ATTEMPTS = 1
    settings.TAKO_BREAKER_THRESHOLD = 2

    class GvisorGone(FakeSandbox):
        def run(self, spec):  # type: ignore[no-untyped-def]
            if spec.shape.runtime == "runsc":
                raise SandboxUnavailable(
                    "Creating the container: the engine has no such runtime (unknown runtime runsc)"
                )
            return super().run(spec)

    sandbox = GvisorGone()
    strict = Environment.objects.get(name="strict")
    for _ in range(2):
        job = execution_create(code="print(1)", input_data={}, environment=strict)
        ended = execution_run(execution_id=job.pk, sandbox=sandbox, role="web")
        assert (ended.error_type, "no such runtime" in ended.error_message) == ("service_unavailable", True)
    assert breaker_state(breaker_name("runsc"))["state"] == CircuitBreaker.State.OPEN
    assert breaker_state()["state"] == CircuitBreaker.State.CLOSED  # the engine's own: runc runs go on
    default = execution_create(code="print(1)", input_data={}, environment=Environment.objects.get(name="default"))
    ran = execution_run(execution_id=default.pk, sandbox=sandbox, role="web")
    assert (ran.status, ran.stdout) == (Execution.Status.SUCCEEDED, "1\n")
