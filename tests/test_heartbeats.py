"""Each long-running process beats; what a host reports comes only from processes that beat."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from executions.health import health_report
from executions.models import ProcessBeat
from executions.resilience import engines
from executions.services.heartbeats import ALIVE_SECONDS, Heartbeat, processes
from tests.support import start_worker, wait_for


@pytest.mark.django_db
def test_a_beat_is_listed_alive_and_a_silent_process_as_gone() -> None:
    Heartbeat("web").beat()
    ProcessBeat.objects.create(
        host="gone-host", role="pool", pid=7, engine="gone-engine",
        started_at=timezone.now(), beat_at=timezone.now() - timedelta(seconds=ALIVE_SECONDS + 1),
    )  # fmt: skip
    listed = {(p["host"], p["role"]): p for p in processes()}
    mine = next(p for (host, role), p in listed.items() if role == "web" and p["pid"] == os.getpid())
    assert mine["alive"] and mine["last_beat_seconds"] < 5
    assert listed[("gone-host", "pool")]["alive"] is False


@pytest.mark.django_db
def test_rows_of_processes_gone_an_hour_are_forgotten() -> None:
    ProcessBeat.objects.create(
        host="old", role="worker", pid=1, started_at=timezone.now(), beat_at=timezone.now() - timedelta(hours=2)
    )
    Heartbeat("worker", engine="e1").beat()
    assert not ProcessBeat.objects.filter(host="old").exists()


@pytest.mark.django_db
def test_health_lists_the_processes() -> None:
    Heartbeat("worker", engine="engine-h").beat()
    report = health_report()
    assert any(p["role"] == "worker" and p["engine"] == "engine-h" and p["alive"] for p in report["processes"])


@pytest.mark.docker
@pytest.mark.system
def test_a_worker_without_a_pool_keeper_still_makes_its_engine_known(
    transactional_db: None, default_image: str, settings, tmp_path: Path
) -> None:
    """A web-only host (no engine of its own) learns of the workers' engines from their clusters'
    own beats, even with the warm pool (and so its keeper) off."""
    settings.TAKO_WEB_USES_DOCKER = False
    worker = start_worker(tmp_path / "worker.log", name="beating", TAKO_POOL_ENABLED="0", TAKO_ENGINE_NAME="engine-w")
    try:
        wait_for(lambda: any(e["name"] == "engine-w" for e in engines()), timeout=20, what="the worker's engine")
        assert health_report()["status"] == "healthy"
        assert ProcessBeat.objects.filter(role="worker", engine="engine-w").exists()
        assert not ProcessBeat.objects.filter(role="pool", engine="engine-w").exists()
    finally:
        worker.stop()
