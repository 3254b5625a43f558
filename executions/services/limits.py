"""Per-caller limits: requests a minute, and jobs in progress at once."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache

from executions.errors import QuotaExceeded, RateLimited
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


def jobs_in_progress(*, user: Any, client_ip: str | None) -> int:
    """The caller's queued or running jobs (anonymous callers are told apart by address)."""
    active = Execution.objects.filter(status__in=[Execution.Status.QUEUED, Execution.Status.RUNNING])
    if user is not None:
        return active.filter(submitted_by=user).count()
    return active.filter(submitted_by=None, client_ip=client_ip).count()


def job_quota_check(*, user: Any, client_ip: str | None) -> None:
    """QuotaExceeded when the caller already has TAKO_MAX_JOBS_IN_PROGRESS jobs queued or running."""
    limit = settings.TAKO_MAX_JOBS_IN_PROGRESS
    if limit and jobs_in_progress(user=user, client_ip=client_ip) >= limit:
        raise QuotaExceeded(f"Too many jobs in progress ({limit}); wait for some to finish", QUOTA_RETRY_AFTER)
