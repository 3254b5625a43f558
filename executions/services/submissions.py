"""Admission: the one way a job is created, whoever asks (API, pages, the DLQ).

A validated request (job_requests.py) is admitted: the rate limit, an earlier submission with the
same idempotency key, the breaker, the caller's quota of jobs in progress, room in the queue.
Refusals are ApplicationErrors (executions/errors.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from executions.broker import tasks_commit_with_jobs
from executions.errors import (
    AlreadyRequeued,
    EngineUnavailable,
    FieldErrors,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    QueueFull,
)
from executions.models import Batch, DeadLetter, Environment, EnvironmentVersion, Execution, Lock, memory_bytes
from executions.resilience import no_engine_available
from executions.services.audit import audit_record
from executions.services.input_files import input_files_of, input_files_store, input_files_store_for
from executions.services.job_requests import (
    BatchRequest,
    DeriveRequest,
    ExecuteRequest,
    InputFile,
    canonical_json,
    environment_named,
    job_type_named,
    request_hash,
    sha256_hex,
)
from executions.services.jobs import execution_dispatch, executions_dispatch
from executions.services.limits import rate_key, request_count, room_check
from executions.services.webhooks import webhook_delivery_create

ENGINE_RETRY_AFTER = 30  # the breaker's reset time, about


@dataclass(frozen=True)
class Submitter:
    """Who submits a job: recorded on it, and what its limits are counted by."""

    user: Any  # None: anonymous (loopback) use
    client_ip: str | None
    correlation_id: str = ""
    # The API counts every request against the rate limit as it arrives (reads too), so it passes
    # None; a page's submission is counted here, under the same key, so pages are no way around it.
    rate_key: str | None = None
    api_key: Any = None  # the key a script called with: its jobs share the workers as that key's,
    # and its webhook secret signs their webhooks

    @property
    def caller(self) -> str:
        """Whose share of the workers its jobs take (the rate limit's key: key, else user, else address)."""
        return rate_key(api_key=self.api_key, user=self.user, client_ip=self.client_ip)

    @property
    def weight(self) -> int:
        return int(self.api_key.weight) if self.api_key is not None else 1


@dataclass(frozen=True)
class Admitted:
    execution: Execution
    created: bool  # False: an earlier submission with the same idempotency key


# -- admission -------------------------------------------------------------------------------------
def execution_submit(
    request: ExecuteRequest,
    *,
    submitter: Submitter,
    parent: Execution | None = None,
    relationship: str | None = None,
) -> Admitted:
    """Queue a job for the worker clusters (POST /execute/async, the New and Fork pages)."""
    return _admit(request, submitter, is_async=True, parent=parent, relationship=relationship)


def execution_submit_sync(request: ExecuteRequest, *, submitter: Submitter) -> Admitted:
    """Record a job its caller waits for (POST /execute); the caller runs it, or waits for the
    earlier run of the same idempotency key. An open breaker does not refuse it here: Tako VM
    answers such a run with a record ending in `service_unavailable`, which the run itself writes."""
    return _admit(request, submitter, is_async=False, refuse_without_engine=False)


def execution_derive(
    parent: Execution, *, relationship: str, submitter: Submitter, changes: DeriveRequest | None = None
) -> Admitted:
    """A new job from an old one: `rerun` (same code) or `fork` (new code); same input and settings."""
    changes = changes or DeriveRequest()
    request = ExecuteRequest(
        code=changes.code if changes.code is not None else parent.code,
        environment=changes.environment or _environment_of(parent.job_type),
        input_data=parent.input_data,
        timeout=changes.timeout or parent.timeout,
        startup_timeout=parent.startup_timeout,
        requirements=parent.requirements,
        # The same build of its job type, unless the change names another job type (or version).
        version=changes.version if changes.environment else parent.job_version,
        files=tuple(input_files_of(parent)),
    )
    submitter = replace(submitter, correlation_id=submitter.correlation_id or parent.correlation_id)
    return _admit(request, submitter, is_async=True, parent=parent, relationship=relationship)


def dlq_requeue(*, entry: DeadLetter, by: str, correlation_id: str = "") -> Execution:
    """A new job from a dead letter, linked to it; the entry records who requeued it and when.
    The job already passed its submitter's quota once: an operator restoring it is not held to it."""
    with transaction.atomic():
        locked = DeadLetter.objects.select_for_update().filter(pk=entry.pk).first()
        if locked is None:  # deleted by someone else meanwhile
            raise NotFound(f"DLQ entry {entry.pk} no longer exists")
        if locked.requeued_at is not None:
            raise AlreadyRequeued(locked)
        data = locked.job_data
        environment = _environment_of(data["job_type"])
        request = ExecuteRequest(
            code=data["code"],
            environment=environment,
            version=_version_of(locked, environment),
            input_data=data.get("input_data") or {},
            timeout=data.get("timeout"),
            startup_timeout=data.get("startup_timeout"),
            requirements=data.get("requirements") or [],
            files=tuple(input_files_of(locked.execution)) if locked.execution is not None else (),
        )
        submitter = Submitter(
            user=None, client_ip=locked.client_ip, correlation_id=correlation_id or locked.correlation_id
        )
        admitted = _admit(
            request,
            submitter,
            is_async=True,
            parent=locked.execution,
            relationship="rerun" if locked.execution_id else None,
            counts_against_quota=False,
        )
        locked.requeued_at = timezone.now()
        locked.requeued_by = by[:150]
        locked.requeued_execution = admitted.execution
        locked.save(update_fields=["requeued_at", "requeued_by", "requeued_execution"])
        audit_record(
            "dlq.requeue",
            actor=by,
            target=f"dlq:{locked.pk}",
            detail={"execution_id": str(admitted.execution.pk), "from_execution_id": str(locked.execution_id or "")},
        )
    return admitted.execution


@dataclass(frozen=True)
class BulkRequeued:
    requeued: list[tuple[int, Execution]]  # (entry id, the new job) for each entry requeued
    skipped: list[tuple[int, str]]  # (entry id, why not) for entries named or matched but not requeued


def dlq_requeue_matching(
    *,
    error_type: str | None = None,
    created_after: Any = None,
    created_before: Any = None,
    ids: list[int] | None = None,
    by: str,
    correlation_id: str = "",
) -> BulkRequeued:
    """Requeue, once each, every DLQ entry not yet requeued that matches all the filters given
    (an error type, a creation time range, a list of ids); at least one filter is required. With no
    engine working nothing is requeued (EngineUnavailable); a queue that fills up midway stops it,
    and the entries left are reported as skipped."""
    if error_type is None and created_after is None and created_before is None and ids is None:
        raise InvalidRequest({"filter": ["Give error_type, created_after/created_before or ids"]})
    if no_engine_available():
        raise EngineUnavailable(
            "Docker circuit breaker is open; nothing is requeued until it closes", retry_after=ENGINE_RETRY_AFTER
        )
    entries = DeadLetter.objects.order_by("created_at", "id")
    if error_type is not None:
        entries = entries.filter(error_type=error_type)
    if created_after is not None:
        entries = entries.filter(created_at__gte=created_after)
    if created_before is not None:
        entries = entries.filter(created_at__lt=created_before)
    skipped: list[tuple[int, str]] = []
    if ids is None:  # by filter: what was requeued before is simply not a match
        entries = entries.filter(requeued_at__isnull=True)
    else:  # by id: each id named is answered for
        entries = entries.filter(pk__in=ids)
        found = set(entries.values_list("pk", flat=True))
        skipped += [(entry_id, "no such entry matches") for entry_id in ids if entry_id not in found]
    requeued: list[tuple[int, Execution]] = []
    pending = list(entries)
    for position, entry in enumerate(pending):
        try:
            requeued.append((entry.pk, dlq_requeue(entry=entry, by=by, correlation_id=correlation_id)))
        except AlreadyRequeued:
            skipped.append((entry.pk, "already requeued"))
        except NotFound:
            skipped.append((entry.pk, "deleted meanwhile"))
        except InvalidRequest as exc:  # its job type, or the build it asked for, is gone
            skipped.append((entry.pk, exc.message))
        except QueueFull as exc:
            skipped += [(rest.pk, str(exc)) for rest in pending[position:]]
            break
    return BulkRequeued(requeued, skipped)


def batch_submit(request: BatchRequest, *, submitter: Submitter) -> tuple[Batch, list[Execution]]:
    """Queue one job per input, admitted as a whole: every job counts against the caller's quota
    (QuotaExceeded) and must fit in the queue (QueueFull); refused, nothing is queued and no file
    is stored. The request's files are shared: each job lists them all."""
    if submitter.rate_key is not None:
        request_count(submitter.rate_key)
    job = request.job
    with transaction.atomic():
        if no_engine_available():
            raise EngineUnavailable(
                "Docker circuit breaker is open; jobs are refused until it closes", retry_after=ENGINE_RETRY_AFTER
            )
        room_check(user=submitter.user, client_ip=submitter.client_ip, jobs=len(request.inputs))
        batch = Batch.objects.create(
            submitted_by=submitter.user,
            client_ip=submitter.client_ip,
            correlation_id=submitter.correlation_id,
            job_type=job.environment.name,
            total=len(request.inputs),
        )
        executions = Execution.objects.bulk_create(
            [
                _execution(
                    **{**_fields(job), "input_data": input_data},
                    correlation_id=submitter.correlation_id,
                    client_ip=submitter.client_ip,
                    submitted_by=submitter.user,
                    caller=submitter.caller,
                    caller_weight=submitter.weight,
                    is_async=True,
                    batch=batch,
                    batch_index=index,
                )
                for index, input_data in enumerate(request.inputs)
            ]
        )
        if job.webhook_url:
            for execution in executions:
                webhook_delivery_create(execution, api_key=submitter.api_key)
        input_files_store_for(executions, job.files)  # once, the limits checked: shared by every job
        transaction.on_commit(lambda: executions_dispatch(executions))
    return batch, executions


def _environment_of(name: str) -> Environment:
    """The environment an earlier job ran in; InvalidRequest if it has been removed since."""
    errors = FieldErrors()
    environment = environment_named(name, errors)
    errors.raise_if_any()
    assert environment is not None
    return environment


def _version_of(entry: DeadLetter, environment: Environment) -> EnvironmentVersion | None:
    """The build a dead letter's job asked for (dlq.dead_letter_add records it), found by its tag
    and checked by its digest; InvalidRequest if it is gone: never the latest image instead."""
    recorded = entry.job_data.get("job_version")
    if recorded is None:  # an entry stored before job_data kept it: the job's record still says
        return entry.execution.job_version if entry.execution is not None else None
    errors = FieldErrors()
    _, version = job_type_named(f"{environment.name}@{recorded['tag']}", errors)
    errors.raise_if_any()
    if version is None or version.digest != recorded["digest"]:
        raise InvalidRequest(
            {
                "job_type": [
                    f"Version '{recorded['tag']}' of job_type '{environment.name}' is no longer the build "
                    f"{recorded['digest']} the job asked for"
                ]
            }
        )
    return version


def _admit(
    request: ExecuteRequest,
    submitter: Submitter,
    *,
    is_async: bool,
    parent: Execution | None = None,
    relationship: str | None = None,
    refuse_without_engine: bool = True,
    counts_against_quota: bool = True,
) -> Admitted:
    if submitter.rate_key is not None:
        request_count(submitter.rate_key)
    with transaction.atomic():
        key = request.idempotency_key
        if key:
            # One keyed admission at a time: two retries racing must not both create a job.
            Lock.objects.select_for_update().get_or_create(name="idempotency")
            earlier = Execution.objects.filter(idempotency_key=key, submitted_by=submitter.user).first()
            if earlier is not None:  # a retry: the same job (and not a new one for the limits)
                if earlier.request_hash != request.fingerprint():
                    raise IdempotencyConflict(earlier)
                return Admitted(earlier, created=False)
        if refuse_without_engine and no_engine_available():
            raise EngineUnavailable(
                "Docker circuit breaker is open; jobs are refused until it closes", retry_after=ENGINE_RETRY_AFTER
            )
        room_check(user=submitter.user, client_ip=submitter.client_ip, counts_against_quota=counts_against_quota)
        execution = execution_create(
            **_fields(request),
            correlation_id=submitter.correlation_id,
            client_ip=submitter.client_ip,
            submitted_by=submitter.user,
            caller=submitter.caller,
            caller_weight=submitter.weight,
            is_async=is_async,
            parent=parent,
            relationship=relationship,
        )
        if request.webhook_url:
            webhook_delivery_create(execution, api_key=submitter.api_key)
        input_files_store(execution, request.files)
        if is_async and tasks_commit_with_jobs():  # its task is stored with it, in one commit
            execution_dispatch(execution)
        elif is_async:  # (Redis: handed over once the job is stored)
            transaction.on_commit(lambda: execution_dispatch(execution))
    return Admitted(execution, created=True)


def _fields(request: ExecuteRequest) -> dict[str, Any]:
    return {
        "code": request.code,
        "environment": request.environment,
        "input_data": request.input_data,
        "timeout": request.timeout,
        "startup_timeout": request.startup_timeout,
        "requirements": request.requirements,
        "idempotency_key": request.idempotency_key,
        "webhook_url": request.webhook_url,
        "version": request.version,
        "files": request.files,
    }


# -- the record ------------------------------------------------------------------------------------
def execution_create(**fields: Any) -> Execution:
    """The record alone, admitted by nothing (`fields` as _execution takes them): for _admit above,
    and for tests that set up records."""
    execution = _execution(**fields)
    execution.save(force_insert=True)
    return execution


def _execution(
    *,
    code: str,
    input_data: dict[str, Any],
    environment: Environment,
    timeout: int | None = None,
    startup_timeout: int | None = None,
    requirements: list[str] | None = None,
    correlation_id: str = "",
    client_ip: str | None = None,
    idempotency_key: str | None = None,
    is_async: bool = False,
    parent: Execution | None = None,
    relationship: str | None = None,
    submitted_by: Any = None,
    caller: str = "",
    caller_weight: int = 1,
    webhook_url: str = "",
    batch: Batch | None = None,
    batch_index: int | None = None,
    version: EnvironmentVersion | None = None,
    files: tuple[InputFile, ...] = (),
) -> Execution:
    """An unsaved record with every derived field filled in."""
    timeout = timeout or environment.timeout
    startup_timeout = startup_timeout or environment.startup_timeout
    requirements = requirements or []
    return Execution(
        caller=caller or (f"user:{submitted_by.pk}" if submitted_by is not None else f"ip:{client_ip}"),
        caller_weight=caller_weight,
        memory_bytes=memory_bytes(environment.memory_limit),
        cpus=environment.cpu_limit,
        quick=not is_async or (timeout <= settings.TAKO_QUICK_TIMEOUT and not requirements),
        job_type=environment.name,
        code=code,
        input_data=input_data,
        timeout=timeout,
        startup_timeout=startup_timeout,
        requirements=requirements,
        code_hash=sha256_hex(code),
        input_hash=sha256_hex(canonical_json(input_data)),
        request_hash=request_hash(
            code=code,
            input_data=input_data,
            environment=environment,
            timeout=timeout,
            startup_timeout=startup_timeout,
            requirements=requirements,
            webhook_url=webhook_url,
            version=version,
            files=files,
        ),
        correlation_id=correlation_id,
        client_ip=client_ip,
        idempotency_key=idempotency_key,
        is_async=is_async,
        parent_execution=parent,
        relationship=relationship,
        submitted_by=submitted_by,
        webhook_url=webhook_url,
        batch=batch,
        batch_index=batch_index,
        job_version=version,
    )
