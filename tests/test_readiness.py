"""GET /health/ready, the web server entry point (takoweb.serve) and the image's healthcheck."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import OperationalError, connection
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from executions import health
from executions.models import CircuitBreaker
from executions.resilience import breaker_failure, engine_seen
from tests.support import ROOT, ApiClient, ServiceProcess
from tests.support import service_database_env as database_env

EVERY_INTERFACE = "0.0.0.0"  # noqa: S104  (what the checks refuse; nothing binds it)


def _ready(api: ApiClient) -> tuple[int, dict[str, Any]]:
    response = api.get("/health/ready")  # checked against the OpenAPI document as well
    return response.status_code, response.json()


def _failed(body: dict[str, Any]) -> list[str]:
    return sorted(name for name, check in body["checks"].items() if not check["ok"])


@pytest.fixture
def engine_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """This host's engine answers (the background probe's result, injected)."""
    monkeypatch.setattr(health, "docker_available", lambda: True)


# -- the endpoint, in process ------------------------------------------------------------------------
def test_ready_when_all_is_well(transactional_db: None) -> None:
    deadline = time.monotonic() + 15
    while not health.docker_available():  # the real background probe of the real engine
        assert time.monotonic() < deadline, "no Docker engine answers"
        time.sleep(0.1)
    status, body = _ready(ApiClient())
    assert (status, body["ready"], _failed(body)) == (200, True, [])
    assert set(body["checks"]) == {"database", "migrations", "queue", "engine"}


def test_unapplied_migrations_are_not_ready(db: None, engine_up: None) -> None:
    recorder = MigrationRecorder(connection)
    last = max(name for app, name in recorder.applied_migrations() if app == "executions")
    recorder.record_unapplied("executions", last)  # rolled back with the test's transaction
    status, body = _ready(ApiClient())
    assert (status, body["ready"], _failed(body)) == (503, False, ["migrations"])
    assert f"executions.{last}" in body["checks"]["migrations"]["detail"]


def test_an_engine_that_does_not_answer_is_not_ready(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "docker_available", lambda: False)
    status, body = _ready(ApiClient())
    assert (status, _failed(body)) == (503, ["engine"])
    assert "does not answer" in body["checks"]["engine"]["detail"]


def test_a_database_that_does_not_answer_is_a_failed_check_not_an_error(
    db: None, engine_up: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused() -> None:
        raise OperationalError("connection refused")

    with monkeypatch.context() as patch:  # undone before the test's transaction is rolled back
        patch.setattr(connection, "ensure_connection", refused)
        status, body = _ready(ApiClient())
    assert (status, _failed(body)) == (503, ["database", "engine", "migrations", "queue"])
    assert body["checks"]["database"]["detail"] == "does not answer (OperationalError)"


def test_ready_answers_at_once_while_the_engine_hangs(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    class HangingSandbox:
        def ping(self) -> bool:
            release.wait(30)
            return False

    monkeypatch.setattr(health, "get_sandbox", HangingSandbox)
    monkeypatch.setitem(health._probe, "at", 0.0)  # the last answer is old: a new probe starts
    monkeypatch.setitem(health._probe, "available", None)
    try:
        started = time.monotonic()
        status, body = _ready(ApiClient())
        assert time.monotonic() - started < 2
        assert (status, _failed(body)) == (503, ["engine"])
    finally:
        release.set()
        for thread in threading.enumerate():
            if thread.name == "docker-probe":
                thread.join(10)  # before the probe's state is put back


def test_a_web_only_host_is_ready_while_a_workers_engine_works(db: None, settings: Any) -> None:
    settings.TAKO_WEB_USES_DOCKER = False
    CircuitBreaker.objects.all().delete()  # only this test's engines (rolled back afterwards)
    api = ApiClient()
    status, body = _ready(api)
    assert (status, _failed(body)) == (503, ["engine"])  # no worker seen
    engine_seen("worker-a")
    assert _ready(api)[0] == 200
    for _ in range(settings.TAKO_BREAKER_THRESHOLD):
        breaker_failure("connection refused", name="worker-a")
    assert _ready(api)[0] == 503  # its breaker is open
    CircuitBreaker.objects.filter(name="worker-a").update(
        state="closed", failure_count=0, seen_at=timezone.now() - timedelta(minutes=5)
    )
    assert _ready(api)[0] == 503  # not seen lately
    engine_seen("worker-a")
    assert _ready(api)[0] == 200


def test_health_keeps_its_shape(db: None) -> None:
    body = ApiClient().get("/health").json()
    assert {"status", "docker_available", "circuit_breaker", "version", "queue_stats", "warm_pool"} <= set(body)
    assert "ready" not in body


# -- the web server entry point and the image's healthcheck -------------------------------------------
def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _serve(log: Path, host: str, **env: str) -> tuple[ServiceProcess, str]:
    """`python -m takoweb.serve` on a free port of `host` (HOST/PORT), once it accepts connections."""
    port = free_port(host)
    server = ServiceProcess(["-m", "takoweb.serve"], log, HOST=host, PORT=str(port), **env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.process.poll() is None:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return server, f"http://{host}:{port}"
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise AssertionError(f"takoweb.serve did not start: {server.output()}")


def _healthcheck(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    environment = {**os.environ, "HOST": host, "PORT": port, **env}
    command = [sys.executable, "-m", "takoweb.healthcheck"]
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=30)


def test_the_web_server_listens_where_the_settings_say(transactional_db: None, tmp_path: Path) -> None:
    hosts = {"TAKO_ALLOWED_HOSTS": "127.0.0.2"}
    server, url = _serve(tmp_path / "serve.log", "127.0.0.2", **database_env(), **hosts)
    try:
        response = requests.get(f"{url}/health", timeout=10)
        assert response.status_code == 200 and "circuit_breaker" in response.json()
        port = int(url.rsplit(":", 1)[1])
        with pytest.raises(ConnectionRefusedError):  # only the address HOST names
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert "System check identified no issues" in server.output()
        deadline = time.monotonic() + 20
        while (done := _healthcheck(url, **hosts)).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.5)  # the server's first engine probe
        assert done.returncode == 0, done.stderr
    finally:
        server.stop()


def test_a_server_on_an_unmigrated_database_is_not_ready(tmp_path: Path) -> None:
    empty = {"TAKO_SQLITE_PATH": str(tmp_path / "empty.sqlite3"), "DATABASE_URL": ""}
    server, url = _serve(tmp_path / "serve.log", "127.0.0.1", **empty)
    try:
        response = requests.get(f"{url}/health/ready", timeout=10)
        assert response.status_code == 503
        assert response.json()["checks"]["migrations"]["ok"] is False
        done = _healthcheck(url)
        assert done.returncode == 1
        assert "not ready (503)" in done.stderr and "migrations:" in done.stderr
    finally:
        server.stop()


def test_the_web_server_refuses_anonymous_use_on_a_public_bind(tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "TAKO_ALLOW_ANONYMOUS": "1",
        "HOST": EVERY_INTERFACE,
        "PORT": str(free_port("127.0.0.1")),
    }
    done = subprocess.run(
        [sys.executable, "-m", "takoweb.serve"], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "(tako.E001) TAKO_ALLOW_ANONYMOUS is on while the service binds 0.0.0.0" in done.stderr
    assert "Listening" not in done.stdout + done.stderr


def test_the_web_server_takes_no_address_but_the_settings(tmp_path: Path) -> None:
    for option in (["-b", EVERY_INTERFACE], ["--bind=0.0.0.0"], ["-p", "9"], ["--unix-socket", str(tmp_path / "s")]):
        done = subprocess.run(
            [sys.executable, "-m", "takoweb.serve", *option], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert done.returncode != 0, option
        assert "listens on HOST and PORT" in done.stderr, option
