"""Limits on callers (requests a minute, jobs in progress at once) and on the queue's length."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Q

from executions.errors import QueueFull, QuotaExceeded, RateLimited
from executions.models import Execution, RateCounter

logger = logging.getLogger(__name__)

QUOTA_RETRY_AFTER = 5  # jobs end in seconds; a caller over its quota looks again soon


def rate_key(*, api_key: Any = None, user: Any = None, client_ip: str | None = None) -> str:
    """Whose requests are counted together: an API key's, else a user's, else an address's."""
    if api_key is not None:
        return f"key:{api_key.pk}"
    if user is not None:
        return f"user:{user.pk}"
    return f"ip:{client_ip}"


@dataclass(frozen=True)
class RateState:
    """Where a caller stands in this minute (the RateLimit-* headers of an API response)."""

    limit: int
    remaining: int
    reset: int  # seconds until the minute ends and the count starts again


# One statement, atomic on SQLite (3.35+) and PostgreSQL alike: insert the minute's counter or add
# one to it, and read the new count back. (Table and column names are the model's, constant.)
UPSERT_COUNT = (
    'INSERT INTO "executions_ratecounter" ("key", "window", "count") VALUES (%s, %s, 1) '
    'ON CONFLICT ("key", "window") DO UPDATE SET "count" = "executions_ratecounter"."count" + 1 RETURNING "count"'
)


def request_count(key: str, limit: int | None = None) -> RateState | None:
    """Count one request of `key` in this minute, in the store every process and host shares;
    RateLimited past `limit` (default TAKO_RATE_LIMIT_PER_MINUTE; 0: no limit, nothing counted)."""
    limit = settings.TAKO_RATE_LIMIT_PER_MINUTE if limit is None else limit
    if not limit:
        return None
    now = time.time()
    window = int(now // 60)
    count = _count(key, window)
    state = RateState(limit=limit, remaining=max(limit - count, 0), reset=60 - int(now) % 60)
    if count > limit:
        raise RateLimited(f"Rate limit exceeded: {limit} requests per minute", state.reset, state=state)
    return state


def _count(key: str, window: int) -> int:
    """This request's number in the window: Redis's atomic INCR through Django's cache when the
    deployment has Redis, else one atomic upsert on the database (no read-modify-write race)."""
    if settings.REDIS_URL:
        from redis.exceptions import RedisError

        counter = f"tako:rate:{key}:{window}"
        try:
            cache.add(counter, 0, timeout=120)
            try:
                return int(cache.incr(counter))
            except ValueError:  # expired between add and incr
                cache.set(counter, 1, timeout=120)
                return 1
        except RedisError as exc:  # Redis is away (a restart): the database counts meanwhile
            logger.warning("Rate limit: Redis does not answer (%s); counting on the database", exc)
    with connection.cursor() as cursor:
        cursor.execute(UPSERT_COUNT, [key[:100], window])
        return int(cursor.fetchone()[0])


def rate_counters_prune() -> int:
    """Counters of minutes gone by (scheduled with the recovery sweep)."""
    current = int(time.time() // 60)
    return RateCounter.objects.filter(window__lt=current - 1).delete()[0]


def room_check(*, user: Any, client_ip: str | None, counts_against_quota: bool = True, jobs: int = 1) -> None:
    """QuotaExceeded when `jobs` more would put the caller over TAKO_MAX_JOBS_IN_PROGRESS jobs
    queued or running (anonymous callers are told apart by address); else QueueFull when they
    would not all fit in TAKO_MAX_QUEUE_SIZE waiting jobs. Both are counted in one query."""
    quota = settings.TAKO_MAX_JOBS_IN_PROGRESS if counts_against_quota else 0
    counts: dict[str, Count] = {"queued": Count("pk", filter=Q(status=Execution.Status.QUEUED))}
    if quota:
        caller = Q(submitted_by=user) if user is not None else Q(submitted_by=None, client_ip=client_ip)
        counts["mine"] = Count("pk", filter=caller)
    active = Execution.objects.filter(status__in=[Execution.Status.QUEUED, Execution.Status.RUNNING])
    found = active.aggregate(**counts)
    if quota and found["mine"] + jobs > quota:
        if jobs == 1:
            raise QuotaExceeded(f"Too many jobs in progress ({quota}); wait for some to finish", QUOTA_RETRY_AFTER)
        raise QuotaExceeded(
            f"{jobs} jobs would exceed your quota of jobs in progress ({quota}; {found['mine']} already are); "
            "nothing was queued",
            QUOTA_RETRY_AFTER,
        )
    if found["queued"] + jobs > settings.TAKO_MAX_QUEUE_SIZE:
        if jobs == 1:
            raise QueueFull(f"The queue is full ({settings.TAKO_MAX_QUEUE_SIZE} jobs waiting); retry later")
        raise QueueFull(
            f"No room in the queue for {jobs} jobs ({found['queued']} of {settings.TAKO_MAX_QUEUE_SIZE} places "
            "taken); nothing was queued, retry later"
        )
