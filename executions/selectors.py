"""Read-only queries shared by the API, the pages and the websockets."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.db.models import QuerySet

from executions.models import Batch, Execution, WebhookAttempt, WebhookDelivery


def sees_every_execution(user: Any) -> bool:
    """Admins (staff accounts) see everyone's executions; analysts their own."""
    return bool(user is not None and user.is_authenticated and user.is_staff)


def executions_visible_to(user: Any, *, sees_all: bool | None = None) -> QuerySet[Execution]:
    """The executions `user` may see: every one for an admin, else the ones they submitted.

    `sees_all` replaces the account's own rights where they come from elsewhere: an API key's
    scope, or anonymous use where the deployment allows it (which acts as an admin)."""
    if sees_all is None:
        sees_all = sees_every_execution(user)
    if sees_all:
        return Execution.objects.all()
    if user is None or not user.is_authenticated:
        return Execution.objects.none()
    return Execution.objects.filter(submitted_by_id=user.pk)


def webhook_of(execution: Execution) -> WebhookDelivery | None:
    """The job's webhook delivery, if it asked for one."""
    if not execution.webhook_url:
        return None
    return WebhookDelivery.objects.filter(execution=execution).first()


def webhook_attempts_of(execution: Execution) -> QuerySet[WebhookAttempt]:
    """Every attempt to deliver the job's webhook, first first."""
    return WebhookAttempt.objects.filter(delivery__execution=execution).order_by("attempt")


def batches_visible_to(user: Any, *, sees_all: bool | None = None) -> QuerySet[Batch]:
    """The batches `user` may see, by the rules of executions_visible_to."""
    if sees_all is None:
        sees_all = sees_every_execution(user)
    if sees_all:
        return Batch.objects.all()
    if user is None or not user.is_authenticated:
        return Batch.objects.none()
    return Batch.objects.filter(submitted_by_id=user.pk)


def batch_progress(batch: Batch) -> dict[str, Any]:
    """How a batch stands: its members' statuses counted, how many ended (done once all have), and
    each member in input order (`job_id`, `status`, `error_type`)."""
    rows = batch.executions.order_by("batch_index").values_list("pk", "status", "error_type")
    items = [{"job_id": str(pk), "status": status, "error_type": error_type} for pk, status, error_type in rows]
    counts = dict(Counter(status for _, status, _ in rows))
    ended = sum(n for status, n in counts.items() if status in Execution.TERMINAL)
    return {
        "batch_id": str(batch.pk),
        "total": batch.total,
        "counts": counts,
        "ended": ended,
        "done": ended == len(items),
        "items": items,
    }
