"""The dead letter queue: jobs that ended in internal_error or service_unavailable, for triage."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from executions.models import DeadLetter, Environment, Execution

logger = logging.getLogger(__name__)

DEAD_LETTER_TYPES = frozenset({"internal_error", "service_unavailable"})


class AlreadyRequeued(Exception):
    def __init__(self, entry: DeadLetter) -> None:
        super().__init__(f"DLQ entry {entry.pk} was already requeued as job {entry.requeued_execution_id}")
        self.entry = entry


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
        },
        error_type=execution.error_type,
        error_message=execution.error_message or "",
        retry_count=max(len(execution.attempts) - 1, 0) if execution.attempts else 0,
        client_ip=execution.client_ip,
        correlation_id=execution.correlation_id,
    )
    logger.warning("Execution %s went to the dead letter queue as entry %s", execution.pk, entry.pk)
    return entry


def dlq_requeue(*, entry: DeadLetter, by: str, correlation_id: str = "") -> Execution:
    """A new job from the entry, linked to it; the entry records who requeued it and when."""
    from executions.services.jobs import execution_submit

    with transaction.atomic():
        locked = DeadLetter.objects.select_for_update().get(pk=entry.pk)
        if locked.requeued_at is not None:
            raise AlreadyRequeued(locked)
        data = locked.job_data
        environment = Environment.objects.get(name=data["job_type"])
        execution, _ = execution_submit(
            environment=environment,
            code=data["code"],
            input_data=data.get("input_data") or {},
            timeout=data.get("timeout"),
            startup_timeout=data.get("startup_timeout"),
            requirements=data.get("requirements") or [],
            correlation_id=correlation_id or locked.correlation_id,
            client_ip=locked.client_ip,
            parent=locked.execution,
            relationship="rerun" if locked.execution_id else None,
        )
        locked.requeued_at = timezone.now()
        locked.requeued_by = by[:150]
        locked.requeued_execution = execution
        locked.save(update_fields=["requeued_at", "requeued_by", "requeued_execution"])
    return execution


def dlq_stats() -> dict[str, object]:
    by_type = dict(DeadLetter.objects.values_list("error_type").annotate(n=Count("id")).order_by())
    return {"total": sum(by_type.values()), "by_error_type": by_type}
