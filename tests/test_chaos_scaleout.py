"""Chaos on the scale-out configuration: the whole service (web and worker cluster, under its
supervisor) on a PostgreSQL and a Redis of this test's own, a steady stream of async jobs, and
PostgreSQL then Redis killed with SIGKILL for 10 s each. Throughout, the service answers every
request (503 with Retry-After while the database is away, never a 500); after each, its
processes are back by themselves and new jobs run; at the end, every job it accepted has
succeeded. The figures (time to answer again, to run a new job again, job counts) are printed.

The two servers are private (free loopback ports, folders of their own): the ones
scripts/ensure-pg-redis.sh starts for the second pass of `make test` are never touched."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from tests.support import ROOT, ServiceProcess, free_port, require_tool, submit, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.system]


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        pytest.fail("PostgreSQL is not installed: run `make setup-test` (scripts/setup.sh test)")
    return found[-1].parent


class PrivatePostgres:
    """A PostgreSQL cluster of its own, run as `postgres` directly (not through pg_ctl), in its
    own process group so that one SIGKILL takes the postmaster and every backend at once."""

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        # Outside pytest's private temporary folder: the postgres user must reach it.
        self.folder = Path(tempfile.mkdtemp(prefix="tako-chaos-pg-", dir="/var/tmp"))
        self.folder.chmod(0o755)
        self.data = self.folder / "data"
        self.data.mkdir(mode=0o700)
        self.user = "postgres" if os.getuid() == 0 else None
        if self.user:
            shutil.chown(self.data, self.user, self.user)
        self.port = free_port()
        self.url = f"postgres://tako:tako@127.0.0.1:{self.port}/tako"
        self.process: subprocess.Popen[bytes] | None = None
        try:
            self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"])
            self.start()
            self._psql("CREATE ROLE tako LOGIN SUPERUSER PASSWORD 'tako'")
            self._psql("CREATE DATABASE tako OWNER tako")
        except BaseException:
            self.remove()
            raise

    def _psql(self, sql: str) -> None:
        self._run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-qc", sql])

    def _run(self, argv: list[str]) -> None:
        subprocess.run(argv, user=self.user, cwd="/", check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = ["-p", str(self.port), "-k", str(self.data), "-c", "fsync=off", "-c", "listen_addresses=127.0.0.1"]
        with (self.folder / "log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data), *options],
                user=self.user, cwd="/", stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_for(self.answers, timeout=60, what="PostgreSQL to accept connections")

    def answers(self) -> bool:
        try:
            psycopg.connect(f"postgres://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=2).close()
            return True
        except psycopg.Error:
            return False

    def kill(self) -> None:
        """SIGKILL to the postmaster and every backend: a crash; the next start recovers from the WAL."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, connect_timeout=5) as connection:
            return list(connection.execute(sql, args).fetchall())

    def remove(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


class PrivateRedis:
    """redis-server with its append-only file fsynced at every write, as a queue must be."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        args = ["--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder)]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        self.process = subprocess.Popen(
            [require_tool("redis-server"), *args], stdout=subprocess.DEVNULL, start_new_session=True
        )
        wait_for(self.answers, timeout=10, what="redis-server to answer")

    def answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def remove(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


class JobStream:
    """Submits print(n) about twice a second and reads /health and /executions between; keeps
    the ids of the jobs accepted (202) by phase, and every other answer by phase and status."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.phase = "start"
        self.accepted: dict[str, str] = {}  # job id -> phase
        self.answers: Counter[tuple[str, str, str]] = Counter()  # (phase, request, status or error)
        self.bad: list[tuple[str, str, int, str]] = []  # answers that are neither a success nor a clear 503
        self.last_accepted_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        with requests.Session() as session:
            while not self._stop.is_set():
                n += 1
                self._ask(session, "submit", "POST", "/execute/async", {"code": f"print({n})", "timeout": 10})
                if n % 2 == 0:
                    self._ask(session, "health", "GET", "/health", None)
                    self._ask(session, "list", "GET", "/executions?limit=5", None)
                self._stop.wait(0.4)

    def _ask(self, session: requests.Session, what: str, method: str, path: str, body: Any) -> None:
        phase = self.phase
        try:
            response = session.request(method, f"{self.url}{path}", json=body, timeout=10)
        except requests.RequestException as exc:  # the web server itself is down or restarting
            self.answers[(phase, what, type(exc).__name__)] += 1
            return
        self.answers[(phase, what, str(response.status_code))] += 1
        if what == "submit" and response.status_code == 202:
            self.accepted[response.json()["job_id"]] = phase
            self.last_accepted_at = time.monotonic()
        elif response.status_code == 503:
            if "Retry-After" not in response.headers or "detail" not in response.json():
                self.bad.append((phase, path, response.status_code, response.text[:300]))
        elif response.status_code >= 300:
            self.bad.append((phase, path, response.status_code, response.text[:300]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def runs_a_job(url: str, timeout: float = 5) -> bool:
    """A job submitted now is accepted and succeeds within `timeout` seconds."""
    try:
        response = requests.post(f"{url}/execute/async", json={"code": "print('probe')"}, timeout=5)
        if response.status_code != 202:
            return False
        job = response.json()["job_id"]
        result = requests.get(f"{url}/jobs/{job}/result?wait=true&timeout={timeout:g}", timeout=timeout + 5)
        return result.status_code == 200 and result.json().get("status") == "succeeded"
    except requests.RequestException:
        return False


def health(url: str) -> dict[str, Any]:
    try:
        response = requests.get(f"{url}/health", timeout=5)
    except requests.RequestException:
        return {}
    return response.json() if response.status_code == 200 else {}


def beating_since(url: str, since: float) -> bool:
    """The web server, the worker cluster and the pool keeper have each beaten since `since`
    (a time.monotonic()): they are alive and reach the database again."""
    ago = time.monotonic() - since
    beats = [p for p in health(url).get("processes", []) if p["alive"] and p["last_beat_seconds"] < ago]
    return {p["role"] for p in beats} >= {"web", "worker", "pool"}


def is_ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/health/ready", timeout=10).status_code == 200
    except requests.RequestException:
        return False


def pool_ready(url: str) -> bool:
    return health(url).get("warm_pool", {}).get("default", {}).get("ready", 0) >= 1


@pytest.fixture
def scaleout_service(default_image: str, tmp_path: Path) -> Iterator[Any]:
    postgres = PrivatePostgres()
    redis_server = PrivateRedis(tmp_path)
    service: ServiceProcess | None = None
    try:
        database = {"DATABASE_URL": postgres.url, "REDIS_URL": redis_server.url, "TAKO_DATA_DIR": str(tmp_path)}
        migrate = subprocess.run(
            [str(ROOT / ".venv/bin/python"), "manage.py", "migrate", "--no-input"],
            cwd=ROOT, env={**os.environ, **database}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert migrate.returncode == 0, migrate.stdout[-2000:] + migrate.stderr[-2000:]
        port = free_port()
        name = f"chaos-so-{port}"
        service = ServiceProcess(
            ["-m", "takoweb.supervise", "web", "worker"], tmp_path / "service.log", **database,
            HOST="127.0.0.1", PORT=str(port), TAKO_WORKER_NAME=name, TAKO_ENGINE_NAME=name,
            TAKO_DEPLOYMENT_ID=name, TAKO_MAX_WORKERS="2", TAKO_POOL_ENABLED="1",
            TAKO_MAX_JOBS_IN_PROGRESS="0", TAKO_MAX_QUEUE_SIZE="1000",
            TAKO_RATE_LIMIT_PER_MINUTE="100000",  # counted (in Redis), never reached
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: runs_a_job(url, timeout=10), timeout=120, what="the service to run a job")
        yield url, postgres, redis_server, service
    finally:
        if service is not None:
            service.stop()
        redis_server.remove()
        postgres.remove()


def test_jobs_survive_postgresql_and_redis_being_killed(scaleout_service: Any) -> None:
    url, postgres, redis_server, service = scaleout_service
    stream = JobStream(url)
    figures: dict[str, dict[str, float]] = {}
    returned_at: dict[str, float] = {}  # wall clock, to compare with the records' times

    def outage(name: str, server: Any, check: str) -> None:
        # Two jobs are running (their containers started) when it goes: they must end as they ran.
        code = f"import time; time.sleep(4); print('ran through {name}')"
        slow = [submit(url, code, timeout=10) for _ in range(2)]  # quick jobs: both may run at once
        stream.accepted.update({job: f"running when {name} went" for job in slow})
        running = (
            "SELECT count(*) FROM executions_execution WHERE id::text = ANY(%s) "
            "AND status = 'running' AND container_started_at IS NOT NULL"
        )
        wait_for(lambda: postgres.query(running, slow)[0][0] == 2, timeout=60, what="two jobs running")
        stream.phase = f"{name} down"
        server.kill()
        began = time.monotonic()
        time.sleep(4)
        # /health/ready tells the truth: not ready, naming what is down.
        ready = requests.get(f"{url}/health/ready", timeout=10)
        assert ready.status_code == 503, ready.text
        body = ready.json()
        if "checks" in body:  # the readiness report itself
            assert not body["checks"][check]["ok"], ready.text
        else:  # the database's 503, before the report could be made
            assert "Retry-After" in ready.headers and "database is unavailable" in body["detail"], ready.text
        time.sleep(10 - (time.monotonic() - began))
        server.start()
        back = time.monotonic()
        returned_at[name] = time.time()
        stream.phase = f"after {name}"
        wait_for(lambda: stream.last_accepted_at > back, timeout=60, what=f"a job accepted again after {name}")
        accepting = stream.last_accepted_at - back
        # Jobs run again: one ends succeeded after the return (the queue may hold a backlog).
        ran = "SELECT count(*) FROM executions_execution WHERE status = 'succeeded' AND ended_at > to_timestamp(%s)"
        wait_for(lambda: postgres.query(ran, returned_at[name])[0][0], timeout=90, what=f"a job to run after {name}")
        running = time.monotonic() - back
        try:
            wait_for(lambda: beating_since(url, back), timeout=60, what=f"every process to beat after {name}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {health(url).get('processes')}") from None
        beating = time.monotonic() - back
        wait_for(lambda: pool_ready(url), timeout=30, what=f"the warm pool after {name}")
        wait_for(lambda: is_ready(url), timeout=30, what=f"/health/ready to say ready after {name}")
        figures[name] = {
            "down": back - began, "accepting again": accepting, "running jobs again": running,
            "every process beating again": beating, "warm pool again": time.monotonic() - back,
        }  # fmt: skip
        time.sleep(3)

    time.sleep(3)
    outage("PostgreSQL", postgres, "database")
    outage("Redis", redis_server, "queue")
    stream.stop()

    ids = list(stream.accepted)
    deadline = time.monotonic() + 120
    while active := postgres.query(
        "SELECT id::text, status, created_at, dispatched_at, started_at, worker FROM executions_execution "
        "WHERE id::text = ANY(%s) AND status IN ('queued', 'running')",
        ids,
    ):
        assert time.monotonic() < deadline, [(stream.accepted[row[0]], *row) for row in active]
        time.sleep(1)
    rows = postgres.query(
        "SELECT id::text, status, error_type, error_message, extract(epoch FROM ended_at) "
        "FROM executions_execution WHERE id::text = ANY(%s)",
        ids,
    )
    for name, at in returned_at.items():  # the jobs accepted while it was down: done how soon after its return
        ended = [float(r[4]) for r in rows if stream.accepted[r[0]] == f"{name} down" and r[4] is not None]
        if ended:
            figures[name][f"all {len(ended)} jobs accepted meanwhile ended"] = max(ended) - at
    dead = {r[0] for r in postgres.query("SELECT execution_id::text FROM executions_deadletter")}
    statuses = Counter(row[1] for row in rows)
    by_phase = Counter(stream.accepted.values())
    answers = sorted(stream.answers.items())
    print(
        f"\nscale-out chaos: {len(ids)} accepted (by phase {dict(by_phase)}); outcomes {dict(statuses)}; "
        f"{len(dead & set(ids))} in the dead letter queue"
    )
    for name, figure in figures.items():
        print(f"  {name}: " + ", ".join(f"{k} {v:.1f} s" for k, v in figure.items()))
    print("  answers: " + ", ".join(f"{phase}/{what}/{status}: {n}" for (phase, what, status), n in answers))
    restarts = [line for line in service.output().splitlines() if "supervise:" in line and "exited" in line]
    print("  supervisor: " + ("; ".join(restarts) or "no process exited"))

    assert len(rows) == len(ids), "every accepted job has its record"
    failed = [(stream.accepted[row[0]], *row[1:4]) for row in rows if row[1] != "succeeded"]
    assert not failed, failed
    assert not stream.bad, stream.bad[:10]  # every answer a success or a clear 503, never a 500
    for name in ("PostgreSQL", "Redis"):
        assert by_phase[f"after {name}"] > 0
    # While the database was away, submissions were answered, and refused clearly.
    assert stream.answers[("PostgreSQL down", "submit", "503")] > 0
    assert "Internal Server Error" not in service.output()
