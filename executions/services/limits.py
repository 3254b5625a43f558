"""Limits on callers (requests a minute, jobs in progress at once) and on the queue's length."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q

from executions.errors import QueueFull, QuotaExceeded, RateLimited
from executions.models import Execution

QUOTA_RETRY_AFTER = 5  # jobs end in seconds; a caller over its quota looks again soon


def rate_key(*, api_key: Any = None, user: Any = None, client_ip: str | None = None) -> str:
    """Whose requests are counted together: an API key's, else a user's, else an address's."""
    if api_key is not None:
        return f"key:{api_key.pk}"
    if user is not None:
        return f"user:{user.pk}"
    return f"ip:{client_ip}"


def request_count(key: str) -> None:
    """Count one request; RateLimited past TAKO_RATE_LIMIT_PER_MINUTE in this minute."""
    limit = settings.TAKO_RATE_LIMIT_PER_MINUTE
    if not limit:
        return
    window = int(time.time() // 60)
    counter = f"tako:rate:{key}:{window}"
    cache.add(counter, 0, timeout=120)
    try:
        count = cache.incr(counter)
    except ValueError:  # evicted between add and incr
        cache.set(counter, 1, timeout=120)
        count = 1
    if count > limit:
        retry_after = 60 - int(time.time()) % 60
        raise RateLimited(f"Rate limit exceeded: {limit} requests per minute", retry_after)


def room_check(*, user: Any, client_ip: str | None, counts_against_quota: bool = True) -> None:
    """QuotaExceeded when the caller already has TAKO_MAX_JOBS_IN_PROGRESS jobs queued or running
    (anonymous callers are told apart by address); else QueueFull when TAKO_MAX_QUEUE_SIZE jobs
    wait. Both are counted in one query."""
    quota = settings.TAKO_MAX_JOBS_IN_PROGRESS if counts_against_quota else 0
    counts: dict[str, Count] = {"queued": Count("pk", filter=Q(status=Execution.Status.QUEUED))}
    if quota:
        caller = Q(submitted_by=user) if user is not None else Q(submitted_by=None, client_ip=client_ip)
        counts["mine"] = Count("pk", filter=caller)
    active = Execution.objects.filter(status__in=[Execution.Status.QUEUED, Execution.Status.RUNNING])
    found = active.aggregate(**counts)
    if quota and found["mine"] >= quota:
        raise QuotaExceeded(f"Too many jobs in progress ({quota}); wait for some to finish", QUOTA_RETRY_AFTER)
    if found["queued"] >= settings.TAKO_MAX_QUEUE_SIZE:
        raise QueueFull(f"The queue is full ({settings.TAKO_MAX_QUEUE_SIZE} jobs waiting); retry later")
