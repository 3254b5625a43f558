"""What /health and /health/ready report. Both must answer fast even while the engine hangs, so
the engine probe runs in the background and they read its latest answer."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from executions.resilience import (
    ENGINE_ALIVE_SECONDS,
    CircuitOpen,
    breaker_acquire,
    breaker_state,
    breaker_success,
    engines,
    this_engine,
)
from executions.sandbox import get_sandbox
from executions.services import containers_reap_quietly, pool_stats, queue_stats
from executions.services.heartbeats import processes

logger = logging.getLogger(__name__)

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
        "processes": processes(),
    }


# -- readiness: may this process be sent traffic? --------------------------------------------------
class NotReady(Exception):
    """A readiness check failed; the message says why, in words fit for a public endpoint."""


def _database() -> str:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
    return "answers"


def _migrations() -> str:
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:3]) + (", …" if len(plan) > 3 else "")
        raise NotReady(f"{len(plan)} not applied ({names}): run manage.py migrate")
    return "all applied"


@functools.cache
def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


def _queue() -> str:
    if settings.REDIS_URL:
        _redis(settings.REDIS_URL).ping()
        return "Redis answers"
    from django_q.conf import Conf
    from django_q.models import OrmQ

    OrmQ.objects.using(Conf.ORM).exists()  # django-q2's ORM broker: its table answers
    return "the database queue answers"


def _engine() -> str:
    if settings.TAKO_WEB_USES_DOCKER:
        if docker_available():
            return f"{this_engine()} answers"
        raise NotReady(f"the Docker engine of this host ({this_engine()}) does not answer")
    working = [engine["name"] for engine in engines() if engine["state"] == "closed"]
    if working:
        return f"{', '.join(working)} working"
    raise NotReady(f"no worker's engine seen in the last {ENGINE_ALIVE_SECONDS} s with its breaker closed")


def _outcome(check: Callable[[], str]) -> dict[str, Any]:
    try:
        return {"ok": True, "detail": check()}
    except NotReady as exc:
        return {"ok": False, "detail": str(exc)}
    except Exception as exc:  # a check that cannot run has failed; readiness itself never fails
        logger.warning("Readiness check %s failed: %s", check.__name__.strip("_"), exc)
        return {"ok": False, "detail": f"does not answer ({type(exc).__name__})"}


def readiness_report() -> dict[str, Any]:
    """Ready only when the database answers with every migration applied, the queue answers and
    at least one engine works. Every check either passes or says why not; none blocks on Docker."""
    checks = {"database": _outcome(_database)}
    for name, check in (("migrations", _migrations), ("queue", _queue), ("engine", _engine)):
        if checks["database"]["ok"] or (name == "queue" and settings.REDIS_URL):
            checks[name] = _outcome(check)
        else:  # each would wait for the database again
            checks[name] = {"ok": False, "detail": "not checked: the database does not answer"}
    return {"ready": all(check["ok"] for check in checks.values()), "checks": checks}
