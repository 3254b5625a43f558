"""Scaling out: Redis as the queue, several worker clusters, configuration errors.

These start a Redis server of their own (Debian's redis-server, which `make test` installs) on a
free loopback port, so a test can restart it; they run on whichever database the pass uses
(SQLite, then PostgreSQL in the second pass of `make test`).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from executions.models import Execution
from tests.support import ROOT, ServiceProcess, free_port, require_tool, start_daphne, start_worker, submit, wait_for


class RedisServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        args = ["--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder)]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]  # queued jobs survive a restart
        self.process = subprocess.Popen([require_tool("redis-server"), *args], stdout=subprocess.DEVNULL)
        wait_for(self.ping, timeout=10, what="redis-server to answer")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    require_tool("redis-server")
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def cluster(transactional_db: None, default_image: str, redis_server: RedisServer, tmp_path: Path) -> Iterator[Any]:
    """A web-only daphne (it runs no container) and worker clusters sharing one Redis queue."""
    env = {"REDIS_URL": redis_server.url, "TAKO_MAX_JOBS_IN_PROGRESS": "0", "TAKO_MAX_QUEUE_SIZE": "500"}
    processes: list[ServiceProcess] = []

    class Cluster:
        redis = redis_server
        url = ""

        def start_worker(self, name: str, **extra: str) -> ServiceProcess:
            worker = start_worker(tmp_path / f"{name}.log", name=name, workers=1, **env, **extra)
            processes.append(worker)
            return worker

    server, Cluster.url = start_daphne(tmp_path / "daphne.log", TAKO_WEB_USES_DOCKER="0", **env)
    processes.append(server)
    yield Cluster()
    for process in processes:
        process.stop()


def test_two_clusters_share_one_queue_and_run_each_job_once(cluster) -> None:
    cluster.start_worker("host-a")
    cluster.start_worker("host-b")
    job_ids = [submit(cluster.url, f"print({n})") for n in range(100)]
    wait_for(
        lambda: not Execution.objects.filter(pk__in=job_ids, status__in=["queued", "running"]).exists(),
        timeout=300,
        what="100 jobs to end",
    )
    records = {str(r.pk): r for r in Execution.objects.filter(pk__in=job_ids)}
    assert all(records[j].status == "succeeded" and records[j].stdout == f"{n}\n" for n, j in enumerate(job_ids))
    hosts = {r.worker.split(":")[0] for r in records.values()}
    assert hosts == {"host-a", "host-b"}, "both clusters took jobs"
    # The web machine runs no container: a sync run goes through the queue to a worker.
    body = requests.post(f"{cluster.url}/execute", json={"code": "print('via a worker')"}, timeout=60).json()
    assert body["success"] is True and body["stdout"] == "via a worker\n"
    assert Execution.objects.get(pk=body["execution_id"]).worker.split(":")[0] in {"host-a", "host-b"}
    # Each ran once: one run per job recorded (a second run would find it claimed and do nothing).
    assert all(len(r.attempts) == 0 and r.started_at is not None for r in records.values())


def _all_succeed(job_ids: list[str], what: str) -> None:
    try:
        wait_for(
            lambda: Execution.objects.filter(pk__in=job_ids, status="succeeded").count() == len(job_ids),
            timeout=120,
            what=what,
        )
    except AssertionError:
        others = Execution.objects.filter(pk__in=job_ids).exclude(status="succeeded")
        raise AssertionError(f"{what}: {[(e.status, e.error_type, e.error_message) for e in others]}") from None


def test_a_redis_restart_loses_no_queued_job_and_workers_reconnect(cluster) -> None:
    queued = [submit(cluster.url, f"print('queued {n}')") for n in range(10)]  # no worker yet
    cluster.redis.restart()
    cluster.start_worker("host-a")
    _all_succeed(queued, "the jobs queued before the restart to run")
    cluster.redis.restart()  # while the cluster runs: it reconnects by itself
    later = [submit(cluster.url, f"print('later {n}')") for n in range(10)]
    _all_succeed(later, "the jobs submitted after the second restart to run")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DATABASE_URL", "mysql://u:p@127.0.0.1/db", "DATABASE_URL: only PostgreSQL"),
        ("DATABASE_URL", "not a url", "DATABASE_URL is not a database URL"),
        ("REDIS_URL", "http://127.0.0.1:6379", "REDIS_URL must look like redis://"),
        ("REDIS_URL", "redis://127.0.0.1:port/0", "REDIS_URL is not a URL"),
    ],
)
def test_a_bad_url_stops_the_start_with_an_error_naming_it(variable: str, value: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "TAKO_DATA_DIR": str(ROOT / "var"), variable: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"tako: {message}"), result.stderr[-2000:]


def test_requests_during_a_redis_outage_fail_clearly_and_lose_nothing(cluster) -> None:
    cluster.start_worker("host-a")
    cluster.redis.stop()
    response = requests.post(f"{cluster.url}/execute/async", json={"code": "print(1)"}, timeout=30)
    cluster.redis.start()
    if response.status_code == 202:  # accepted: it must run (or be dead-lettered), never vanish
        job_id = response.json()["job_id"]
        wait_for(lambda: Execution.objects.get(pk=job_id).is_terminal, timeout=120, what="the job to end")
    else:
        assert response.status_code == 503 and "Retry-After" in response.headers


def test_a_broken_engine_sends_its_jobs_to_the_worker_whose_engine_works(cluster, tmp_path: Path) -> None:
    from tests.dockerproxy import DockerProxy

    proxy = DockerProxy(tmp_path / "docker.sock")
    proxy.up()
    cluster.start_worker("host-a")  # this machine's engine
    broken_engine = {
        "DOCKER_HOST": proxy.url,
        "TAKO_ENGINE_NAME": "engine-b",
        "TAKO_DOCKER_TIMEOUT": "3",
        # Its own host folders, as on a machine of its own (else it would find host-a's pooled
        # containers there: both engines are this machine's, through two doors).
        "TAKO_WORK_DIR": str(tmp_path / "host-b-runs"),
    }
    cluster.start_worker("host-b", TAKO_RETRY_BASE_DELAY="0.1", **broken_engine)

    def engines() -> dict[str, dict]:
        return {e["name"]: e for e in requests.get(f"{cluster.url}/health", timeout=5).json()["engines"]}

    wait_for(lambda: len(engines()) == 2, timeout=60, what="both workers' engines on /health")
    proxy.down()
    job_ids = [submit(cluster.url, f"print({n})") for n in range(20)]
    wait_for(
        lambda: not Execution.objects.filter(pk__in=job_ids, status__in=["queued", "running"]).exists(),
        timeout=180,
        what="the jobs to end",
    )
    records = list(Execution.objects.filter(pk__in=job_ids))
    assert [r.status for r in records] == ["succeeded"] * 20, [(r.error_type, r.error_message) for r in records]
    # host-b's engine no longer answers, but the containers its pool (of 2) had started still run:
    # a job it takes may run in one of them (that path makes no engine call), and in nothing else.
    on_b = [r for r in records if r.worker.startswith("host-b:")]
    assert all(r.warm_start for r in on_b) and len(on_b) <= 2, [(r.worker, r.warm_start) for r in on_b]
    assert len(on_b) < len(records)  # the rest ran where the engine works
    handed = [r for r in records if r.attempts]
    assert handed, "host-b took some jobs, failed to start them, and handed them over"
    assert all("handed to another engine" in r.attempts[-1]["error"] for r in handed)
    broken = engines()["engine-b"]
    assert broken["failure_count"] > 0 and broken["last_failure"]
    assert requests.get(f"{cluster.url}/health", timeout=5).json()["status"] == "healthy"  # host-a serves
