"""Webhooks: a job's record POSTed to its `webhook_url` when it ends, signed, retried, recorded.

- Admission (submissions.py) checks the URL (`webhook_url_problem`, shared with the API's field)
  and makes the job's `WebhookDelivery`, noting whose secret will sign it.
- `lifecycle.end()`, once the end is committed, calls `webhook_queue`: the delivery is queued as a
  django-q2 task on a queue of its own (settings.WEBHOOK_QUEUE, its own cluster), never sent from
  the process that ended the job, so a slow or dead receiver delays no job and no job worker.
- The task (`webhook_deliver`) claims the delivery, makes one attempt through executions/outbound.py
  (the SSRF checks happen there, after DNS, at send time), records it, and either ends the delivery
  (2xx: delivered; a refused target or the last attempt: failed) or sets the next attempt's time.
- `webhooks_due` (every second, from tako_worker) queues the attempts whose time has come;
  `webhooks_recover` (every minute) puts back deliveries whose task was lost.

Signature: `X-Tako-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, keyed with the submitting
API key's webhook secret, else the deployment's TAKO_WEBHOOK_SECRET.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone
from django_q.tasks import async_task

from executions import outbound
from executions.errors import InvalidRequest
from executions.models import Execution, WebhookAttempt, WebhookDelivery

logger = logging.getLogger(__name__)

MAX_URL_CHARS = 2048
EVENT = "execution.finished"
DELIVER_TASK = "executions.tasks.deliver_webhook"
STUCK_AFTER = timedelta(minutes=5)  # queued or sending this long: its task was lost
DUE_BATCH = 100
State = WebhookDelivery.State
PENDING = (State.WAITING, State.QUEUED, State.SENDING, State.RETRYING)


# -- admission -------------------------------------------------------------------------------------
def webhook_url_problem(value: Any) -> str | None:
    """What is wrong with a webhook URL as given (None: nothing). What DNS will say is known only
    at send time; an address written in the URL itself is checked now."""
    if not isinstance(value, str):
        return "webhook_url must be a string"
    if len(value) > MAX_URL_CHARS:
        return f"webhook_url exceeds size limit ({MAX_URL_CHARS} characters)"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        return "webhook_url must not contain spaces or control characters"
    if not value.isascii():
        return "webhook_url must be ASCII: write an international name in punycode (xn--…) and escape the rest (%XX)"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return "webhook_url must be an http or https URL such as https://example.com/hook"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "webhook_url must be an http or https URL such as https://example.com/hook"
    if port == 0:
        return "webhook_url has an invalid port"
    if parts.username is not None or parts.password is not None:
        return "webhook_url must not contain credentials (deliveries are signed instead)"
    literal = outbound.literal_address(parts.hostname)
    if literal is not None:
        reason = outbound.refusal(literal, allow_private=settings.TAKO_WEBHOOK_ALLOW_PRIVATE)
        if reason:
            return f"webhook_url's host {literal} is {reason}, which webhooks may not target"
    return None


def webhook_delivery_create(execution: Execution, *, api_key: Any) -> WebhookDelivery:
    """The delivery of a job just admitted with a webhook_url; InvalidRequest when nothing could
    sign it (a caller without an API key on a deployment without TAKO_WEBHOOK_SECRET)."""
    if api_key is None and not settings.TAKO_WEBHOOK_SECRET:
        raise InvalidRequest(
            {
                "webhook_url": [
                    "webhook_url needs an API key: deliveries are signed with its webhook secret "
                    "(this deployment sets no TAKO_WEBHOOK_SECRET for callers without one)"
                ]
            }
        )
    return WebhookDelivery.objects.create(execution=execution, keyed=api_key is not None, api_key=api_key)


# -- signing and the schedule ------------------------------------------------------------------------
def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_headers(body: bytes, *, secret: str, delivery_id: Any) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": f"Tako-Webhooks/{settings.VERSION}",
        "X-Tako-Event": EVENT,
        "X-Tako-Delivery": str(delivery_id),
        "X-Tako-Signature": signature(body, secret),
    }


def retry_delay(attempt: int) -> float:
    """Seconds from failed attempt `attempt` (1, 2, …) to the next: doubling from the base."""
    return float(settings.TAKO_WEBHOOK_BACKOFF_SECONDS * 2 ** (attempt - 1))


def retry_schedule() -> list[float]:
    """The waits between the attempts (TAKO_WEBHOOK_ATTEMPTS of them in all)."""
    return [retry_delay(n) for n in range(1, settings.TAKO_WEBHOOK_ATTEMPTS)]


def record_body(execution: Execution) -> bytes:
    """What is POSTed: the execution record, default view (as GET /executions/{id} answers it)."""
    return json.dumps(execution.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()


# -- queueing ----------------------------------------------------------------------------------------
def webhook_queue(execution_id: Any) -> bool:
    """The job ended: queue its delivery's first attempt (if it has one, not yet queued). Called by
    lifecycle.end() after the end is committed; never raises (the minute sweep catches up)."""
    try:
        now = timezone.now()
        queued = WebhookDelivery.objects.filter(execution_id=execution_id, state=State.WAITING).update(
            state=State.QUEUED, state_changed_at=now, next_attempt_at=now
        )
    except DatabaseError:
        logger.exception("Could not queue the webhook of %s (the sweep will)", execution_id)
        return False
    if queued:
        _enqueue(execution_id)
    return bool(queued)


def _enqueue(execution_id: Any) -> None:
    try:
        async_task(DELIVER_TASK, str(execution_id), cluster=settings.WEBHOOK_QUEUE, task_name=f"webhook-{execution_id}")
    except Exception:  # the broker is down: the delivery waits for the sweep instead
        logger.exception("Could not queue the webhook of %s; tried again shortly", execution_id)
        WebhookDelivery.objects.filter(execution_id=execution_id, state=State.QUEUED).update(
            state=State.RETRYING, next_attempt_at=timezone.now() + timedelta(seconds=5)
        )


def webhooks_due(now: datetime | None = None) -> int:
    """Queue the attempts whose time has come; how many. Each is claimed by a conditional update,
    so two hosts sweeping at once queue it once."""
    now = now or timezone.now()
    due = list(
        WebhookDelivery.objects.filter(state=State.RETRYING, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("execution_id", flat=True)[:DUE_BATCH]
    )
    count = 0
    for execution_id in due:
        if WebhookDelivery.objects.filter(execution_id=execution_id, state=State.RETRYING).update(
            state=State.QUEUED, state_changed_at=now
        ):
            _enqueue(execution_id)
            count += 1
    return count


def webhooks_recover(now: datetime | None = None) -> int:
    """Deliveries whose task was lost (queued or sending for STUCK_AFTER: a worker killed in the
    middle, a queue that lost it) are tried again; so are the few whose job ended while their
    queueing failed. How many."""
    now = now or timezone.now()
    stuck = WebhookDelivery.objects.filter(
        state__in=[State.QUEUED, State.SENDING], state_changed_at__lt=now - STUCK_AFTER
    ).update(state=State.RETRYING, next_attempt_at=now, state_changed_at=now)
    forgotten = WebhookDelivery.objects.filter(
        state=State.WAITING, execution__status__in=list(Execution.TERMINAL), execution__ended_at__lt=now - STUCK_AFTER
    ).values_list("execution_id", flat=True)
    return stuck + sum(webhook_queue(execution_id) for execution_id in list(forgotten))


# -- one attempt -------------------------------------------------------------------------------------
def webhook_deliver(
    execution_id: Any,
    *,
    resolver: outbound.Resolver | None = None,
    connector: outbound.Connector = outbound.tcp_connect,
) -> WebhookDelivery | None:
    """Make the next attempt of a queued delivery and record it; None if it was not queued (another
    task has it, or it ended). `resolver` and `connector` are for tests (the system's by default)."""
    claimed = WebhookDelivery.objects.filter(execution_id=execution_id, state=State.QUEUED).update(
        state=State.SENDING, state_changed_at=timezone.now()
    )
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("execution", "api_key").get(execution_id=execution_id)
    attempt = delivery.attempts + 1
    started_at, started = timezone.now(), time.monotonic()
    secret = _secret(delivery)
    if secret is None:
        sent = outbound.Sent(None, _no_secret(delivery), refused=True)
    else:
        body = record_body(delivery.execution)
        sent = outbound.post(
            delivery.execution.webhook_url,
            body,
            webhook_headers(body, secret=secret, delivery_id=delivery.pk),
            timeout=settings.TAKO_WEBHOOK_TIMEOUT,
            allow_private=settings.TAKO_WEBHOOK_ALLOW_PRIVATE,
            resolver=resolver,
            connector=connector,
        )
    now = timezone.now()
    if sent.ok:
        state, next_at = State.DELIVERED, None
    elif sent.refused or attempt >= settings.TAKO_WEBHOOK_ATTEMPTS:
        state, next_at = State.FAILED, None
    else:
        state, next_at = State.RETRYING, now + timedelta(seconds=retry_delay(attempt))
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            attempt=attempt,
            status_code=sent.status_code,
            error=sent.error[:2000],
            at=started_at,
            duration_ms=int((time.monotonic() - started) * 1000),
        )
        WebhookDelivery.objects.filter(pk=delivery.pk, state=State.SENDING).update(
            attempts=attempt, state=state, next_attempt_at=next_at, state_changed_at=now
        )
    log = logger.info if sent.ok else logger.warning
    log("Webhook of %s, attempt %d: %s", execution_id, attempt, sent.error or f"HTTP {sent.status_code}")
    delivery.refresh_from_db()
    return delivery


def _secret(delivery: WebhookDelivery) -> str | None:
    if delivery.keyed:
        return delivery.api_key.webhook_secret if delivery.api_key is not None else None
    return settings.TAKO_WEBHOOK_SECRET or None


def _no_secret(delivery: WebhookDelivery) -> str:
    if delivery.keyed:
        return "The API key that submitted the job was deleted: nothing to sign the delivery with"
    return "TAKO_WEBHOOK_SECRET is not set: nothing to sign the delivery with"
