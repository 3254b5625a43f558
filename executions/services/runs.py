"""Running one admitted execution: claim it within the worker budget, run it, record how it ended
(the moves between statuses are lifecycle.py's)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone

from executions.correlation import correlation_context
from executions.live import notify_execution_changed
from executions.models import Environment, EnvironmentVersion, Execution
from executions.resilience import (
    CircuitOpen,
    another_engine_available,
    breaker_acquire,
    breaker_failure,
    breaker_name,
    breaker_success,
    retry_policy,
)
from executions.sandbox import (
    RunResult,
    RunSpec,
    Sandbox,
    SandboxError,
    SandboxUnavailable,
    get_sandbox,
    without_nul,
)
from executions.sandbox.classify import Outcome, classify_exit, failure
from executions.sandbox.packages import PackageError, wheel_set
from executions.services import lifecycle
from executions.services.cleanup import containers_reap_quietly
from executions.services.environments import environment_shape
from executions.services.input_files import input_files_for_run
from executions.timings import timing_mark

logger = logging.getLogger(__name__)

MONITOR_TICK_SECONDS = 0.15  # output reaches pages within ~0.3 s of the print


def worker_name(role: str) -> str:
    """Who runs a job: `host:worker` for the cluster, `host:web:pid` for sync runs in a web process."""
    suffix = f"web:{os.getpid()}" if role == "web" else role
    return f"{settings.TAKO_WORKER_NAME}:{suffix}"


def execution_run(
    *,
    execution_id: Any,
    sandbox: Sandbox | None = None,
    role: str = "worker",
    may_hand_over: bool = False,
    execution: Execution | None = None,
    environment: Environment | None = None,
) -> Execution:
    """Claim a queued execution (waiting for a free slot of the worker budget), run it, record it.

    Never raises for a fault of the sandbox: the record then ends failed with
    `service_unavailable` (the engine is unreachable) or `internal_error`, unless `may_hand_over`
    and another engine works: then, its container never having started, it is returned queued
    again for another worker. If the execution was claimed elsewhere or cancelled while it
    waited, it is returned as it is.

    Who just admitted it may pass the `execution` and its `environment` as loaded, saving their
    reads; `execution_id` is then its pk.
    """
    if execution is None or execution.pk != execution_id:
        execution = Execution.objects.get(pk=execution_id)
    if role == "worker":  # a worker runs the job whose caller's turn it is, not always this one
        claimed = lifecycle.claim_next(execution, worker=worker_name(role))
        if claimed is None:
            logger.info("No job waits (execution %s was claimed elsewhere or cancelled)", execution.pk)
            return Execution.objects.get(pk=execution.pk)
        if claimed.pk == execution.pk:
            for field in ("status", "started_at", "heartbeat_at", "worker"):
                setattr(execution, field, getattr(claimed, field))
        else:
            execution, environment = Execution.objects.get(pk=claimed.pk), None
    elif not lifecycle.claim(execution, worker=worker_name(role)):
        logger.info("Execution %s was claimed elsewhere or cancelled", execution.pk)
        return Execution.objects.get(pk=execution.pk)
    timing_mark("claim")
    with correlation_context(execution.correlation_id):
        logger.info("Running execution %s on %s", execution.pk, execution.job_type)
        outcome: Outcome = failure("internal_error", "Internal error while running the job", phase="startup")
        result: RunResult | None = None
        monitor = _RunMonitor(execution)
        handed_over = False
        try:
            result = _run_with_retries(execution, sandbox or get_sandbox(), monitor, role=role, environment=environment)
            outcome = _outcome_of(result, execution)
        except PackageError as exc:
            outcome = failure("dependency_error", str(exc), phase="startup")
        except StartupTimeout as exc:
            outcome = failure("timeout", str(exc), phase="startup")
        except (SandboxUnavailable, CircuitOpen) as exc:
            if may_hand_over and not monitor.container_started and another_engine_available():
                handed_over = True
                monitor.stop()
                return _hand_over(execution, str(exc))
            waits = role == "worker" and execution.is_async and not monitor.container_started
            if waits and _within_outage_grace(execution):
                handed_over = True
                monitor.stop()
                return _wait_for_engine(execution, str(exc))
            phase = "execution" if monitor.container_started else "startup"
            outcome = failure("service_unavailable", _unavailable_message(execution, exc), phase=phase)
        except (SandboxError, Environment.DoesNotExist) as exc:
            outcome = failure("internal_error", str(exc), phase="startup")
        except Exception:
            logger.exception("Execution %s failed inside the service", execution.pk)
        finally:
            monitor.stop(wait=False)  # (a write of its still under way matches no row once the end is)
            timing_mark("monitor")
            if not handed_over:  # (else it is queued again, for another worker)
                if monitor.cancel.is_set() and (result is None or not outcome.success):
                    outcome = failure("cancelled", "Cancelled by request", phase=outcome.phase or "execution")
                while_the_database_is_away(
                    lambda: lifecycle.end(
                        execution, outcome, result=result, output=execution.output, expected=[Execution.Status.RUNNING]
                    ),
                    what=f"recording how execution {execution.pk} ended",
                )
                timing_mark("record")
        logger.info("Execution %s ended %s (%s)", execution.pk, execution.status, execution.error_type or "ok")
        return execution


def _hand_over(execution: Execution, error: str) -> Execution:
    """Back to the queue, for a worker whose engine works (this one's does not)."""
    logger.warning("Execution %s: this engine fails (%s); handing it to another worker", execution.pk, error)
    _note_attempt(execution, len(execution.attempts) + 1, f"{error} (handed to another engine)")
    lifecycle.requeue(execution)
    execution.refresh_from_db()
    execution.requeued_here = True  # type: ignore[attr-defined]
    return execution


def _within_outage_grace(execution: Execution) -> bool:
    """May this async job, whose engine fails while no other works, wait for one to work again?"""
    since = execution.engine_wait_since or timezone.now()
    return (timezone.now() - since).total_seconds() < settings.TAKO_OUTAGE_GRACE


def execution_hold_for_engine(execution_id: Any) -> Execution | None:
    """Every engine is failing (this host's breaker is open and no other works): a queued async
    job stays queued, unclaimed, while within TAKO_OUTAGE_GRACE, so its status never flickers to
    running for a run that cannot start. Returns it when held, None when it should run now (to
    end service_unavailable past the grace) or is no longer queued."""
    execution = Execution.objects.get(pk=execution_id)
    if execution.status != Execution.Status.QUEUED or not execution.is_async:
        return None
    if not _within_outage_grace(execution):
        return None
    if execution.engine_wait_since is None:
        execution.engine_wait_since = timezone.now()
        Execution.objects.filter(pk=execution.pk, engine_wait_since__isnull=True).update(
            engine_wait_since=execution.engine_wait_since
        )
        logger.warning("Execution %s: every engine is failing; it waits for one, queued", execution.pk)
    return execution


def _wait_for_engine(execution: Execution, error: str) -> Execution:
    """Back to the queue to wait out an outage of every engine (its container never started);
    the task hands it to the queue again after a pause (tasks.run_execution)."""
    if execution.engine_wait_since is None:
        execution.engine_wait_since = timezone.now()
        Execution.objects.filter(pk=execution.pk).update(engine_wait_since=execution.engine_wait_since)
        logger.warning("Execution %s: no engine works (%s); it waits for one, queued", execution.pk, error)
    lifecycle.requeue(execution)
    execution.refresh_from_db()
    execution.requeued_here = True  # type: ignore[attr-defined]
    return execution


def _unavailable_message(execution: Execution, exc: Exception) -> str:
    message = f"Docker is unavailable: {exc}"
    if execution.engine_wait_since is not None:
        waited = (timezone.now() - execution.engine_wait_since).total_seconds()
        message += (
            f" (waited {waited:.0f} s for an engine to work again; TAKO_OUTAGE_GRACE is {settings.TAKO_OUTAGE_GRACE} s)"
        )
    return message


def _run_with_retries(
    execution: Execution, sandbox: Sandbox, monitor: _RunMonitor, *, role: str, environment: Environment | None
) -> RunResult:
    """Run through the circuit breaker; transient engine faults before the container started are
    tried again with backoff. A run whose container started is never repeated (it may have had
    effects), and a sync run finds an open breaker refusing at once. Runs under another runtime
    than runc have a breaker of their own (breaker_name), so an engine whose gVisor fails goes on
    running the other job types."""
    if environment is None or environment.name != execution.job_type:
        environment = Environment.objects.filter(name=execution.job_type).first()
    breaker = breaker_name(environment.effective_runtime if environment is not None else "runc")
    policy = retry_policy()
    for attempt in range(1, policy.attempts + 1):
        try:
            breaker_acquire(breaker)
        except CircuitOpen as exc:
            _note_attempt(execution, attempt, str(exc))
            if role == "web" or attempt == policy.attempts:
                raise
        else:
            try:
                spec = _run_spec(execution, sandbox, monitor, environment)
                timing_mark("spec")
                result = sandbox.run(spec)
            except SandboxUnavailable as exc:
                breaker_failure(str(exc), breaker)
                _note_attempt(execution, attempt, str(exc))
                if monitor.container_started or attempt == policy.attempts:
                    raise
            else:
                try:
                    engine_back = breaker_success(breaker)
                except DatabaseError as exc:  # the run went well; its count for the breaker is lost
                    logger.warning("Execution %s: the breaker could not count its success (%s)", execution.pk, exc)
                    engine_back = False
                if engine_back:  # the engine is back: remove what its outage left behind
                    containers_reap_quietly()
                return result
        delay = policy.delay(attempt)
        logger.warning("Execution %s: Docker failed (attempt %s); retrying in %.1fs", execution.pk, attempt, delay)
        time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


MAX_ATTEMPTS_KEPT = 20  # a job waiting out a long outage fails every few seconds: keep the latest


def _note_attempt(execution: Execution, attempt: int, error: str) -> None:
    entry = {"attempt": attempt, "error": error, "at": timezone.now().isoformat()}
    execution.attempts = [*execution.attempts, entry][-MAX_ATTEMPTS_KEPT:]
    Execution.objects.filter(pk=execution.pk).update(attempts=execution.attempts)


class _RunMonitor:
    """While a run goes on: stores its output as it comes, beats its heartbeat, watches for cancel.

    One background thread with its own database connection; output is written at most every
    quarter second, so a chatty program costs a few small writes per second, not one per line.
    """

    def __init__(self, execution: Execution) -> None:
        self.execution_id = execution.pk
        self.is_async = execution.is_async
        self.cancel = threading.Event()
        self.container_started = False
        self._output = {"stdout": "", "stderr": ""}
        self._truncated: dict[str, bool] = {}  # {"stdout_truncated": True}, once a stream passed the cap
        self._dirty = False
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._started_at: Any = None  # a container start not yet recorded (the database was away)
        self._thread = threading.Thread(target=self._loop, name=f"run-monitor-{execution.pk}", daemon=True)
        self._thread.start()

    def on_output(self, stream: str, text: str) -> None:
        with self._lock:
            self._output[stream] += text
            self._dirty = True

    def on_truncated(self, stream: str) -> None:
        """Stored live (the record ends so too): followers tell their clients at once."""
        with self._lock:
            self._truncated[f"{stream}_truncated"] = True
            self._dirty = True

    def on_container_start(self) -> None:
        self.container_started = True
        if not self.is_async:  # recovery re-runs a lost worker's job only if its container never started
            return
        self._started_at = timezone.now()
        try:
            Execution.objects.filter(pk=self.execution_id).update(container_started_at=self._started_at)
            self._started_at = None
        except DatabaseError as exc:  # the loop records it once the database answers again
            logger.warning("Execution %s: could not record its container's start (%s)", self.execution_id, exc)

    def stop(self, *, wait: bool = True) -> None:
        """Stop its writes. Without `wait` it returns at once: the run's end no longer waits for
        the thread to wake and go (milliseconds on a busy machine); its writes only ever change a
        running job's row, so one still under way matches nothing once the end is recorded. Before
        the job is queued again for another worker it waits: that worker's run is running too."""
        self._stopped.set()
        if wait:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        last_beat = time.monotonic()
        try:
            while not self._stopped.wait(MONITOR_TICK_SECONDS):
                with self._lock:
                    dirty, self._dirty = self._dirty, False
                    output = {**self._output, **self._truncated}
                due = time.monotonic() - last_beat >= settings.TAKO_HEARTBEAT_SECONDS
                try:
                    if dirty or due:
                        fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
                        if dirty:
                            fields.update(output)
                        if self._started_at is not None:
                            fields["container_started_at"] = self._started_at
                        running = Execution.objects.filter(pk=self.execution_id, status=Execution.Status.RUNNING)
                        running.update(**fields)
                        self._started_at = None
                        last_beat = time.monotonic()
                        if dirty:
                            notify_execution_changed(self.execution_id)
                    if Execution.objects.filter(pk=self.execution_id, cancel_requested=True).exists():
                        self.cancel.set()
                except DatabaseError as exc:
                    # The database is away (a restart): the run goes on; the monitor beats and
                    # writes the output again once it answers, on a connection opened afresh.
                    logger.warning("Run monitor of %s: %s", self.execution_id, exc)
                    connections.close_all()
                    with self._lock:
                        self._dirty = self._dirty or dirty
                    self._stopped.wait(1.0)
        except Exception:
            logger.exception("Run monitor of %s failed", self.execution_id)
        finally:
            connections.close_all()  # this thread's own connection


def while_the_database_is_away(write: Any, *, what: str, seconds: float | None = None) -> Any:
    """Run `write`, trying again while the database is away (a restart), for up to `seconds`
    (default TAKO_STALE_AFTER: after that the sweep for jobs whose worker stopped beating ends a
    running job anyway); each try after a failure opens a fresh connection."""
    deadline = time.monotonic() + (settings.TAKO_STALE_AFTER if seconds is None else seconds)
    while True:
        try:
            return write()
        except DatabaseError as exc:
            if time.monotonic() > deadline:
                raise
            logger.warning("%s: the database is away (%s); trying again", what[:1].upper() + what[1:], exc)
            close_old_connections()
            time.sleep(1.0)


class StartupTimeout(Exception):
    """The startup phase (image, packages, container start) used up `startup_timeout`."""


def _run_spec(
    execution: Execution, sandbox: Sandbox, monitor: _RunMonitor, environment: Environment | None = None
) -> RunSpec:
    """`environment`: the execution's, as its admission loaded it a moment ago (else read here)."""
    began = time.monotonic()
    if environment is None or environment.name != execution.job_type:
        try:
            environment = Environment.objects.get(name=execution.job_type)
        except Environment.DoesNotExist:
            raise Environment.DoesNotExist(f"Job type '{execution.job_type}' no longer exists") from None
    if execution.job_version_id is not None:  # job_type "name@…": that build's image, kept under its tag
        image_ref = EnvironmentVersion.objects.get(pk=execution.job_version_id).image_ref
    else:
        image_ref = _wait_for_image(environment, sandbox, deadline=began + execution.startup_timeout)
    wheels_dir = None
    if execution.requirements:
        wheels_dir = str(
            wheel_set(
                execution.requirements,
                cache=Path(settings.TAKO_WHEEL_CACHE),
                timeout=max(execution.startup_timeout - 1, 1),
            )
        )
    return RunSpec(
        execution_id=str(execution.pk),
        shape=environment_shape(environment, image_ref, wheels_dir=wheels_dir),
        code=execution.code,
        input_json=json.dumps(execution.input_data),
        input_files=input_files_for_run(execution),
        timeout=execution.timeout,
        startup_timeout=max(execution.startup_timeout - (time.monotonic() - began), 0),
        warm_pool=settings.TAKO_POOL_ENABLED and environment.wants_pool,
        quick=execution.quick,
        on_output=monitor.on_output,
        on_truncated=monitor.on_truncated,
        on_container_start=monitor.on_container_start,
        cancel=monitor.cancel,
    )


def _wait_for_image(environment: Environment, sandbox: Sandbox, *, deadline: float) -> str:
    """The image's `name@sha256:…`: the one its last build recorded (no engine call; an image
    removed since fails the container's creation, "image not found"), else the engine's, which
    is then recorded as its image (an image built before this database, as on a new data folder),
    and a job on an environment whose first image is being built (or queued to be) waits for the
    build (within startup)."""
    if environment.image_ref is not None:
        return environment.image_ref
    image_ref = _engine_image(environment, sandbox, deadline=deadline)
    Environment.objects.filter(pk=environment.pk, image_digest="").update(image_digest=image_ref.partition("@")[2])
    return image_ref


def _engine_image(environment: Environment, sandbox: Sandbox, *, deadline: float) -> str:
    while (image_ref := sandbox.image_ref(environment.image)) is None:
        environment.refresh_from_db(fields=["build_status", "build_error"])
        if environment.build_status not in Environment.BUILD_PENDING:  # queued or building: wait
            reason = f" (the last build failed: {environment.build_error})" if environment.build_error else ""
            raise SandboxError(
                f"The image of job type '{environment.name}' is not built{reason}; an admin can build it with "
                f"POST /job-types/{environment.name}/build or manage.py tako_images build {environment.name}"
            )
        if time.monotonic() > deadline:
            raise StartupTimeout(
                f"The image of job type '{environment.name}' was still being built when startup_timeout passed"
            )
        time.sleep(1)
    return image_ref


def _outcome_of(result: RunResult, execution: Execution) -> Outcome:
    outcome = classify_exit(
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        oom_killed=result.oom_killed,
        exception=result.exception,
        timeout=execution.timeout,
        startup_timed_out=result.startup_timed_out,
        startup_timeout=execution.startup_timeout,
        dependency_error=result.dependency_error,
        cancelled=result.cancelled,
    )
    if result.result_json is not None:
        try:
            execution.output = without_nul(json.loads(result.result_json))
        except ValueError as exc:
            if outcome.success:
                outcome = failure("json_error", f"Invalid JSON in /output/result.json: {exc}", phase="output")
    return outcome
