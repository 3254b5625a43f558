"""What /health reports. It must answer fast even while the engine hangs, so the engine probe
runs in the background and /health reads its latest answer."""

from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings
from django.db import connections

from executions.resilience import CircuitOpen, breaker_acquire, breaker_state, breaker_success, engines
from executions.sandbox import get_sandbox
from executions.services import containers_reap_quietly, pool_stats, queue_stats

PROBE_MAX_AGE = 2.0  # seconds before a new background probe is started
FIRST_PROBE_WAIT = 0.05  # the very first /health waits this long for a first answer

_lock = threading.Lock()
_probe: dict[str, Any] = {"available": None, "at": 0.0, "running": False}


def _run_probe() -> None:
    try:
        available = get_sandbox().ping()
        probe_breaker(available)
    finally:
        with _lock:
            _probe.update(available=locals().get("available", False), at=time.monotonic(), running=False)
        connections.close_all()  # this thread's own connection


def probe_breaker(available: bool) -> None:
    """An engine that answers again is the breaker's probe: it closes without waiting for a job.

    When it closes, containers that could not be removed while the engine was away go too.
    """
    if not available or breaker_state()["state"] == "closed":
        return
    try:
        breaker_acquire()
    except CircuitOpen:
        return
    if breaker_success():
        containers_reap_quietly()


def docker_available() -> bool:
    """The engine's last probe result, refreshing it in the background when it is old."""
    with _lock:
        stale = time.monotonic() - _probe["at"] > PROBE_MAX_AGE
        start = stale and not _probe["running"]
        if start:
            _probe["running"] = True
        first = _probe["available"] is None
    if start:
        thread = threading.Thread(target=_run_probe, name="docker-probe", daemon=True)
        thread.start()
        if first:
            thread.join(FIRST_PROBE_WAIT)
    with _lock:
        return bool(_probe["available"])


def health_report() -> dict[str, Any]:
    known = engines()
    if settings.TAKO_WEB_USES_DOCKER:
        available, breaker = docker_available(), breaker_state()
    else:  # a web-only machine: the workers' engines, the healthiest first
        order = {"closed": 0, "half_open": 1, "open": 2}
        best = min(known, key=lambda e: order[e["state"]], default=None)
        available = best is not None and best["state"] == "closed"
        breaker = {k: v for k, v in best.items() if k != "name"} if best else breaker_state()
    healthy = available and breaker["state"] == "closed"
    return {
        "status": "healthy" if healthy else "degraded",
        "docker_available": available,
        "circuit_breaker": breaker,
        "engines": known,
        "version": settings.VERSION,
        "queue_stats": queue_stats().to_dict(),
        "warm_pool": pool_stats(),
    }
