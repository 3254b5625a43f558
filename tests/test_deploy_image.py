"""The deployment image (deploy/Dockerfile), built as scripts/build-deploy-image.sh builds it: from
the hashed lock, unprivileged, with a HEALTHCHECK, and as safe as `make run` about anonymous use."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import requests

from tests.support import ROOT, free_port

pytestmark = [pytest.mark.docker, pytest.mark.system]


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def deploy_image(docker_engine: object) -> Iterator[str]:
    tag = f"tako-vm-django:test-{uuid.uuid4().hex[:8]}"
    built = subprocess.run(
        ["scripts/build-deploy-image.sh", tag], cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert built.returncode == 0, built.stdout + built.stderr
    yield tag
    docker("image", "rm", "-f", tag)


def test_the_image_runs_unprivileged_with_a_healthcheck(deploy_image: str) -> None:
    config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", deploy_image).stdout)
    assert config["User"] == "tako"
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "-m", "takoweb.healthcheck"]
    assert "HOST=0.0.0.0" in config["Env"]


def test_anonymous_use_with_the_images_public_bind_refuses_to_start(deploy_image: str) -> None:
    run = docker("run", "--rm", "-e", "TAKO_ALLOW_ANONYMOUS=1", deploy_image)
    assert run.returncode != 0
    assert "tako.E001" in run.stderr and "TAKO_ALLOW_ANONYMOUS" in run.stderr
    assert "Listening on" not in run.stdout + run.stderr


def test_a_bad_setting_stops_the_image_with_one_line(deploy_image: str) -> None:
    run = docker("run", "--rm", "-e", "TAKO_QUEUE_POLL=1s", deploy_image)
    assert run.returncode != 0
    assert "TAKO_QUEUE_POLL" in run.stderr and "Traceback" not in run.stderr


def test_the_image_serves_health_and_is_not_ready_without_an_engine(deploy_image: str) -> None:
    port = free_port()
    started = docker(
        "run", "-d", "-p", f"127.0.0.1:{port}:8000", "-e", "TAKO_ALLOWED_HOSTS=127.0.0.1", deploy_image,
        "sh", "-c", "python manage.py migrate --noinput -v0 && exec python -m takoweb.serve",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, docker("logs", container).stderr
                time.sleep(0.5)
        assert health.status_code == 200 and health.json()["docker_available"] is False
        ready = requests.get(f"http://127.0.0.1:{port}/health/ready", timeout=5)
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks["migrations"]["ok"] and checks["database"]["ok"] and not checks["engine"]["ok"]
        # The image's own HEALTHCHECK command says the same: not ready.
        probe = docker("exec", container, "python", "-m", "takoweb.healthcheck")
        assert probe.returncode == 1
    finally:
        docker("rm", "-f", container)
