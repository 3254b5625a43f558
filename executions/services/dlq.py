"""The dead letter queue: jobs that ended in internal_error or service_unavailable, for triage.

Requeueing creates a job, so it is admitted like any other (submissions.dlq_requeue)."""

from __future__ import annotations

import logging

from django.db.models import Count

from executions.models import DeadLetter, Execution
from executions.services.audit import audit_record

logger = logging.getLogger(__name__)

DEAD_LETTER_TYPES = frozenset({"internal_error", "service_unavailable"})


def dead_letter_add(execution: Execution) -> DeadLetter | None:
    """Store the execution in the DLQ if it ended in one of DEAD_LETTER_TYPES."""
    if execution.error_type not in DEAD_LETTER_TYPES:
        return None
    entry = DeadLetter.objects.create(
        execution=execution,
        job_data={
            "code": execution.code,
            "input_data": execution.input_data,
            "job_type": execution.job_type,
            "timeout": execution.timeout,
            "startup_timeout": execution.startup_timeout,
            "requirements": execution.requirements,
            **_version_of(execution),
        },
        error_type=execution.error_type,
        error_message=execution.error_message or "",
        retry_count=max(len(execution.attempts) - 1, 0) if execution.attempts else 0,
        client_ip=execution.client_ip,
        correlation_id=execution.correlation_id,
    )
    logger.warning("Execution %s went to the dead letter queue as entry %s", execution.pk, entry.pk)
    return entry


def _version_of(execution: Execution) -> dict[str, object]:
    """The build a job asked for (`name@<tag>` or `name@sha256:…`): a requeue runs on that image,
    not the latest. Tag and digest both: a tag names one image, but a job type made again under
    the same name numbers its builds from v1 again."""
    version = execution.job_version
    if version is None:
        return {}
    return {"job_version": {"tag": version.tag, "digest": version.digest}}


def dlq_stats() -> dict[str, object]:
    by_type = dict(DeadLetter.objects.values_list("error_type").annotate(n=Count("id")).order_by())
    return {"total": sum(by_type.values()), "by_error_type": by_type}


def dlq_delete(entry: DeadLetter, *, by: str) -> None:
    """Remove an entry (its execution stays), recording who did."""
    entry_id, error_type = entry.pk, entry.error_type
    entry.delete()
    audit_record("dlq.delete", actor=by, target=f"dlq:{entry_id}", detail={"error_type": error_type})
