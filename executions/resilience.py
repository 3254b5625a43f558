"""Circuit breaker and retry policy around the Docker engine.

The breaker's state lives in the database, one row per Docker engine (TAKO_ENGINE_NAME), updated
under a row lock, so every process using an engine sees (and moves) the same breaker, and one
broken engine does not stop the others. Only faults of the engine count: failures of the user's
code are results, not Docker failures. Each worker host's pool keeper marks its engine as seen,
so the others know which engines are alive.

closed --(TAKO_BREAKER_THRESHOLD consecutive failures)--> open
open --(TAKO_BREAKER_RESET_SECONDS later, one probe let through)--> half_open
half_open --(TAKO_BREAKER_CLOSE_AFTER successes)--> closed;  half_open --(a failure)--> open
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from executions.models import CircuitBreaker, iso_utc

PROBE_STALE_SECONDS = 120  # a probe that never reported back (its worker died) frees the slot
ENGINE_ALIVE_SECONDS = 60  # an engine whose keeper has not been seen for this long is taken for gone


HEALTHY_CACHE_SECONDS = 2.0  # how long this process trusts a read of a closed breaker with no failures

# engine name -> time.monotonic() of the last read finding its breaker closed with no failures. On
# the hot path, breaker_acquire and breaker_success then cost no statement. This process's own
# failures clear it at once; another process's failures reach it within HEALTHY_CACHE_SECONDS
# (meanwhile it only tries the engine, which fails on its own if it is down).
_seen_healthy: dict[str, float] = {}


def _recently_healthy(name: str) -> bool:
    seen = _seen_healthy.get(name)
    return seen is not None and time.monotonic() - seen < HEALTHY_CACHE_SECONDS


def forget_breaker_reads() -> None:
    """Drop what this process remembers of the breakers (tests that move a breaker by hand)."""
    _seen_healthy.clear()


def this_engine() -> str:
    return str(settings.TAKO_ENGINE_NAME)


class CircuitOpen(Exception):
    """The breaker refuses calls to the engine right now."""


def _locked(name: str) -> CircuitBreaker:
    breaker, _ = CircuitBreaker.objects.select_for_update().get_or_create(name=name)
    return breaker


def breaker_acquire(name: str | None = None) -> None:
    """Ask to call the engine; raises CircuitOpen when the breaker refuses."""
    name = name or this_engine()
    if _recently_healthy(name):  # the common case: no statement at all
        return
    row = CircuitBreaker.objects.filter(name=name).values_list("state", "failure_count").first()
    state, failures = row or (CircuitBreaker.State.CLOSED, 0)
    if state == CircuitBreaker.State.CLOSED:  # a read, no lock
        if failures == 0:
            _seen_healthy[name] = time.monotonic()
        return
    now = timezone.now()
    with transaction.atomic():
        breaker = _locked(name)
        if breaker.state == CircuitBreaker.State.CLOSED:
            return
        reset_at = (breaker.opened_at or now) + timedelta(seconds=settings.TAKO_BREAKER_RESET_SECONDS)
        if breaker.state == CircuitBreaker.State.OPEN and now >= reset_at:
            breaker.state = CircuitBreaker.State.HALF_OPEN
            breaker.success_count = 0
            breaker.probe_started_at = None
        if breaker.state == CircuitBreaker.State.HALF_OPEN:
            probe_stale = breaker.probe_started_at is None or now - breaker.probe_started_at > timedelta(
                seconds=PROBE_STALE_SECONDS
            )
            if probe_stale:  # one probe at a time
                breaker.probe_started_at = now
                breaker.save()
                return
            breaker.save()
        raise CircuitOpen(
            f"Docker circuit breaker is {breaker.state} after {breaker.failure_count} consecutive failures"
            + (f" (last: {breaker.last_failure})" if breaker.last_failure else "")
        )


def breaker_success(name: str | None = None) -> bool:
    """Record a call that worked; True when this closed the breaker (the engine is back)."""
    name = name or this_engine()
    if _recently_healthy(name):  # closed with no failures to forget: nothing to write
        return False
    healthy = CircuitBreaker.objects.filter(name=name, state=CircuitBreaker.State.CLOSED, failure_count=0)
    if healthy.exists():  # a read: a closed breaker's successes are not counted
        _seen_healthy[name] = time.monotonic()
        return False
    closed = False
    with transaction.atomic():
        breaker = _locked(name)
        breaker.success_count += 1
        breaker.probe_started_at = None
        if breaker.state == CircuitBreaker.State.HALF_OPEN:
            if breaker.success_count >= settings.TAKO_BREAKER_CLOSE_AFTER:
                breaker.state = CircuitBreaker.State.CLOSED
                breaker.failure_count = 0
                breaker.closed_at = timezone.now()
                closed = True
        elif breaker.state == CircuitBreaker.State.CLOSED:
            breaker.failure_count = 0
        breaker.save()
    return closed


def breaker_failure(message: str, name: str | None = None) -> None:
    name = name or this_engine()
    _seen_healthy.pop(name, None)
    now = timezone.now()
    with transaction.atomic():
        breaker = _locked(name)
        breaker.failure_count += 1
        breaker.last_failure = message[:1000]
        breaker.last_failure_at = now
        breaker.probe_started_at = None
        trips = breaker.state == CircuitBreaker.State.HALF_OPEN or (
            breaker.state == CircuitBreaker.State.CLOSED and breaker.failure_count >= settings.TAKO_BREAKER_THRESHOLD
        )
        if trips:
            breaker.state = CircuitBreaker.State.OPEN
            breaker.opened_at = now
            breaker.success_count = 0
        breaker.save()


def breaker_state(name: str | None = None) -> dict[str, Any]:
    """The breaker as /health shows it (an open breaker past its reset time reads half_open)."""
    name = name or this_engine()
    return _state_of(CircuitBreaker.objects.filter(name=name).first() or CircuitBreaker(name=name))


def _state_of(breaker: CircuitBreaker) -> dict[str, Any]:
    state = breaker.state
    reset = timedelta(seconds=settings.TAKO_BREAKER_RESET_SECONDS)
    if state == CircuitBreaker.State.OPEN and breaker.opened_at and timezone.now() >= breaker.opened_at + reset:
        state = CircuitBreaker.State.HALF_OPEN
    return {
        "state": state,
        "failure_count": breaker.failure_count,
        "success_count": breaker.success_count,
        "last_failure": breaker.last_failure or None,
        "last_failure_at": iso_utc(breaker.last_failure_at),
        "opened_at": iso_utc(breaker.opened_at),
    }


def breaker_is_open(name: str | None = None) -> bool:
    """True while the breaker refuses all work (not yet half_open)."""
    return breaker_state(name)["state"] == CircuitBreaker.State.OPEN


def breaker_name(runtime: str = "runc", engine: str | None = None) -> str:
    """The breaker of runs under `runtime` on an engine: the engine's own for runc, one of its
    own for each other runtime (a gVisor that fails stops only the job types that use it)."""
    engine = engine or this_engine()
    return engine if runtime == "runc" else f"{engine}+{runtime}"


def breaker_refuses(name: str | None = None) -> bool:
    """Would breaker_acquire refuse now? Open and not yet due to reset, or half_open with a probe
    in flight. A read, no lock: workers ask it before claiming a job they could not start."""
    breaker = CircuitBreaker.objects.filter(name=name or this_engine()).first()
    if breaker is None or breaker.state == CircuitBreaker.State.CLOSED:
        return False
    now = timezone.now()
    if breaker.state == CircuitBreaker.State.OPEN:
        reset_at = (breaker.opened_at or now) + timedelta(seconds=settings.TAKO_BREAKER_RESET_SECONDS)
        return now < reset_at
    probing_since = breaker.probe_started_at
    return probing_since is not None and now - probing_since <= timedelta(seconds=PROBE_STALE_SECONDS)


def engine_seen(name: str | None = None) -> None:
    """A worker host's keeper says its engine is alive (at most every few seconds)."""
    CircuitBreaker.objects.update_or_create(name=name or this_engine(), defaults={"seen_at": timezone.now()})


def engine_runtimes_record(runtimes: list[str], name: str | None = None) -> None:
    """A worker host says which runtimes its engine has (at start, then every minute or so)."""
    CircuitBreaker.objects.update_or_create(name=name or this_engine(), defaults={"runtimes": sorted(runtimes)})


def runtime_available(runtime: str) -> bool | None:
    """Does some live engine have this runtime? None while no live engine has said."""
    alive_since = timezone.now() - timedelta(seconds=ENGINE_ALIVE_SECONDS)
    reported = [b.runtimes for b in CircuitBreaker.objects.filter(seen_at__gte=alive_since) if b.runtimes]
    if not reported:
        return None
    return any(runtime in runtimes for runtimes in reported)


def engines() -> list[dict[str, Any]]:
    """Every engine alive (its keeper seen lately) or used by this process, with its breaker."""
    alive_since = timezone.now() - timedelta(seconds=ENGINE_ALIVE_SECONDS)
    rows = CircuitBreaker.objects.filter(seen_at__gte=alive_since)
    found = {breaker.name: breaker for breaker in rows}
    if settings.TAKO_WEB_USES_DOCKER and this_engine() not in found:
        found[this_engine()] = CircuitBreaker.objects.filter(name=this_engine()).first() or CircuitBreaker(
            name=this_engine()
        )
    return [{"name": name, **_state_of(breaker)} for name, breaker in sorted(found.items())]


def no_engine_available() -> bool:
    """True while every known engine's breaker is open: new jobs are refused then (503)."""
    known = engines()
    return bool(known) and all(engine["state"] == CircuitBreaker.State.OPEN for engine in known)


def another_engine_available() -> bool:
    """Is some other live engine's breaker closed? Then a job this engine cannot start goes there."""
    return any(e["name"] != this_engine() and e["state"] == CircuitBreaker.State.CLOSED for e in engines())


@dataclass(frozen=True)
class RetryPolicy:
    """Transient engine faults are tried again: `attempts` in all, exponential backoff with jitter."""

    attempts: int
    base_delay: float

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return self.base_delay * (2 ** (attempt - 1)) * random.uniform(0.5, 1.5)  # noqa: S311 (jitter)


def retry_policy() -> RetryPolicy:
    return RetryPolicy(attempts=settings.TAKO_RETRY_ATTEMPTS, base_delay=settings.TAKO_RETRY_BASE_DELAY)
