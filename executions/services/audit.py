"""The audit log: who did what to the service, and when.

Every admin action passes through `audit_record`: DLQ requeues and deletions, image builds, API
key changes, and every change made in /admin/ (environments, users, keys; mirrored from Django's
admin log), plus failed logins and lockouts. Read through `audit_events` (the API's GET /audit
and the audit page); kept for TAKO_RETENTION_DAYS like executions.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.db.models import QuerySet

from executions.correlation import current_correlation_id
from executions.models import AuditEvent

logger = logging.getLogger(__name__)

ADMIN_ACTIONS = {ADDITION: "add", CHANGE: "change", DELETION: "delete"}


def audit_record(
    action: str,
    *,
    actor: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
    client_ip: str | None = None,
) -> AuditEvent:
    """Record one action, with the correlation id of the request (or job) doing it."""
    correlation_id = current_correlation_id()
    event = AuditEvent.objects.create(
        actor=actor[:150] or "unknown",
        action=action,
        target=target[:255],
        detail=detail or {},
        correlation_id="" if correlation_id == "-" else correlation_id,
        client_ip=client_ip or None,
    )
    logger.info("audit: %s %s %s", event.actor, action, target)
    return event


def audit_admin_change(entry: LogEntry) -> AuditEvent:
    """One change made in /admin/ (Django's own log of it), as an audit event."""
    content_type: Any = entry.content_type
    user: Any = entry.user
    model = content_type.model if content_type is not None else "object"
    return audit_record(
        f"admin.{model}.{ADMIN_ACTIONS.get(entry.action_flag, 'change')}",
        actor=user.get_username(),
        target=f"{model}:{entry.object_id} {entry.object_repr}".strip(),
        detail={"change": entry.get_change_message()} if entry.change_message else {},
    )


def audit_events(
    *,
    action: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditEvent]:
    """The events matching every filter given, newest first. `action` matches a prefix at a dot
    boundary too: `dlq` finds dlq.requeue and dlq.delete."""
    events = AuditEvent.objects.all()
    if action:
        events = events.filter(action=action) | events.filter(action__startswith=f"{action}.")
    if actor:
        events = events.filter(actor=actor)
    if since is not None:
        events = events.filter(at__gte=since)
    if until is not None:
        events = events.filter(at__lt=until)
    return events.order_by("-at", "-id")
