"""Chaos: the whole service under its supervisor, a steady stream of async jobs, and its parts
killed in turn with SIGKILL (the web server, the pool keeper, one cluster worker process, the whole
cluster) and the Docker engine taken away for 20 s (through a socket proxy that refuses and cuts
connections, as a stopped daemon does). After each: every accepted job ends, the warm pool serves
again within 30 s, and /health tells the truth. PostgreSQL and Redis killed under a stream of
jobs are in test_chaos_scaleout.py (the scale-out configuration); see also test_scaleout.py and
test_database_down.py."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from executions.models import DeadLetter, Execution
from tests.dockerproxy import DockerProxy
from tests.support import ServiceProcess, free_port, parent_of, pids_with, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.system]


class JobStream:
    """Submits print(n) every quarter second; keeps the ids of the jobs accepted (202), by phase."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.phase = "start"
        self.accepted: dict[str, str] = {}  # job id -> phase
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        with requests.Session() as session:
            while not self._stop.is_set():
                n += 1
                try:
                    response = session.post(f"{self.url}/execute/async", json={"code": f"print({n})"}, timeout=5)
                    if response.status_code == 202:
                        self.accepted[response.json()["job_id"]] = self.phase
                    else:
                        self.refused += 1
                except requests.RequestException:
                    self.refused += 1  # the web server is down: nothing was accepted
                self._stop.wait(0.25)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def health(url: str) -> dict[str, Any] | None:
    try:
        response = requests.get(f"{url}/health", timeout=3)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None


def pool_ready(url: str) -> bool:
    report = health(url)
    return bool(report) and report["warm_pool"].get("default", {}).get("ready", 0) >= 1  # type: ignore[index]


@pytest.fixture
def chaos_service(transactional_db: None, default_image: str, tmp_path: Path) -> Any:
    proxy = DockerProxy(tmp_path / "docker.sock")
    proxy.up()
    port = free_port()
    name = f"chaos-{port}"
    service = ServiceProcess(
        ["-m", "takoweb.supervise", "web", "worker"], tmp_path / "service.log",
        HOST="127.0.0.1", PORT=str(port), TAKO_WORKER_NAME=name, TAKO_ENGINE_NAME=name, DOCKER_HOST=proxy.url,
        TAKO_MAX_WORKERS="2", TAKO_QUEUE_POLL="0.05", TAKO_BREAKER_RESET_SECONDS="5", TAKO_RETRY_BASE_DELAY="0.2",
        TAKO_DOCKER_TIMEOUT="3", TAKO_POOL_ENABLED="1",
        # A task a killed cluster had taken from the queue is handed out again after this (600 s
        # by default, so a long queue wait is never mistaken for a loss); the sweep runs each minute.
        TAKO_REDISPATCH_AFTER="30",
        TAKO_DEPLOYMENT_ID=name,
        # Its own queue: the session's live service shares this database, and its cluster must
        # never take (and sit on) the tasks of the jobs this test counts.
        TAKO_QUEUE_NAME=name,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: pool_ready(url), timeout=90, what="the service and its warm pool")
        yield url, name, proxy, service
    finally:
        proxy.up()
        service.stop()


def test_the_service_survives_its_parts_being_killed(chaos_service: Any) -> None:
    url, name, proxy, service = chaos_service
    env = f"TAKO_WORKER_NAME={name}"
    stream = JobStream(url)
    timings: dict[str, float] = {}
    worker_kills: list[float] = []  # when a process running jobs was killed (wall clock, as the records)

    def settle(phase: str, began: float) -> None:
        """The pool serves again, and a job submitted now runs from it."""
        wait_for(lambda: pool_ready(url), timeout=30, what=f"the warm pool after: {phase}")
        timings[phase] = time.monotonic() - began
        stream.phase = f"after {phase}"
        time.sleep(2)

    time.sleep(3)
    # 1. The web server.
    stream.phase = "web killed"
    (web,) = pids_with("takoweb.serve", f"PORT={url.rsplit(':', 1)[1]}")
    began = time.monotonic()
    os.kill(web, signal.SIGKILL)
    wait_for(lambda: health(url) is None, timeout=10, what="the web server to be gone")
    wait_for(lambda: health(url) is not None, timeout=30, what="the web server to come back")
    settle("web killed", began)

    # 2. The pool keeper: tako_worker starts it again; its counts are shown only while it beats.
    stream.phase = "keeper killed"
    (keeper,) = pids_with("manage.py tako_pool", env)
    began = time.monotonic()
    os.kill(keeper, signal.SIGKILL)
    wait_for(lambda: pids_with("manage.py tako_pool", env) - {keeper}, timeout=30, what="a new keeper")
    settle("keeper killed", began)

    # 3. One process of the cluster (not its main process): the cluster's sentinel replaces it.
    stream.phase = "cluster worker killed"
    cluster = pids_with("manage.py tako_worker", env)
    main = next(pid for pid in cluster if parent_of(pid) not in cluster)
    child = max(pid for pid in cluster if pid != main)
    began = time.monotonic()
    os.kill(child, signal.SIGKILL)
    worker_kills.append(time.time())
    settle("cluster worker killed", began)

    # 4. The whole cluster at once: the supervisor starts it again, and it recovers its jobs.
    stream.phase = "cluster killed"
    began = time.monotonic()
    os.killpg(main, signal.SIGKILL)
    worker_kills.append(time.time())
    wait_for(lambda: pids_with("manage.py tako_worker", env) - cluster, timeout=30, what="a new cluster")
    # Its keeper, left without its cluster, drains its pool and ends (tako_pool.PARENT_ENV).
    wait_for(lambda: len(pids_with("manage.py tako_pool", env)) == 1, timeout=30, what="one keeper again")
    settle("cluster killed", began)

    # 5. The engine gone for 20 s: /health says so; jobs wait for it; the pool refills after.
    stream.phase = "engine gone"
    proxy.down()
    began = time.monotonic()
    wait_for(lambda: (h := health(url)) and not h["docker_available"], timeout=15, what="/health to see it")
    time.sleep(20)
    proxy.up()
    back = time.monotonic()
    wait_for(lambda: (h := health(url)) and h["docker_available"], timeout=30, what="/health to see it back")
    settle("engine gone", back)
    timings["engine gone (total)"] = time.monotonic() - began

    stream.stop()
    ids = list(stream.accepted)
    deadline = time.monotonic() + 240
    while active := list(Execution.objects.filter(pk__in=ids, status__in=["queued", "running"])):
        assert time.monotonic() < deadline, [(stream.accepted[str(e.pk)], e.status, e.worker) for e in active]
        time.sleep(1)
    jobs = {str(e.pk): e for e in Execution.objects.filter(pk__in=ids)}
    assert len(jobs) == len(ids)
    failed = {i: e for i, e in jobs.items() if e.status != "succeeded"}

    # A job whose own worker process was killed while it ran is never run twice (it may have had
    # effects): it ends internal_error, in the dead letter queue, saying why. Nothing else fails.
    # (Which jobs ran at a kill is told by their records' times, not by when they were accepted: a
    # job accepted just before the phase changed may be the one running when the kill comes.)
    def running_at_a_kill(execution: Execution) -> bool:
        started, ended = execution.started_at, execution.ended_at
        return bool(started and ended) and any(started.timestamp() <= t <= ended.timestamp() for t in worker_kills)

    for job_id, execution in failed.items():
        details = (
            stream.accepted[job_id], execution.status, execution.error_type, execution.error_message,
            execution.started_at, execution.ended_at, worker_kills, execution.stderr[-800:],
            execution.warm_start, execution.attempts,
        )  # fmt: skip
        assert running_at_a_kill(execution), details
        assert execution.error_type == "internal_error", details
        assert DeadLetter.objects.filter(execution=execution).exists()
    warm = Execution.objects.filter(pk__in=ids, warm_start=True).count()
    by_phase = {
        phase: sum(1 for p in stream.accepted.values() if p == phase) for phase in set(stream.accepted.values())
    }
    print(
        f"\nchaos: {len(ids)} accepted ({stream.refused} refused while parts were down), "
        f"{len(ids) - len(failed)} succeeded, {len(failed)} internal_error (their worker killed mid-run), "
        f"{warm} warm; by phase {by_phase}; recovered (pool warm again) after "
        + ", ".join(f"{k}: {v:.1f} s" for k, v in timings.items())
    )
    assert len(ids) > 50 and warm > 0
    assert "supervise: web exited with signal SIGKILL" in service.output()
    assert "supervise: pool keeper exited with signal SIGKILL" in service.output()
