"""Image builds are queued tasks that a worker runs; what a build recorded is what pages and
GET /job-types read, without asking Docker."""

from __future__ import annotations

import contextlib
from typing import Any

import docker
import pytest
import requests
from django.contrib.auth.models import User
from django.test import Client

import executions.sandbox
from executions.models import Environment
from tests.support import wait_for

BUILD_SECONDS = 300  # a real build on a loaded machine


def _settled(url: str, name: str) -> dict[str, Any]:
    """GET /job-types/{name} once its build is no longer queued or building."""

    def state() -> dict[str, Any] | None:
        body = requests.get(f"{url}/job-types/{name}", timeout=10).json()
        return None if body["build_status"] in ("queued", "building") else body

    return wait_for(state, timeout=BUILD_SECONDS, what=f"the build of {name} to end")


def test_a_build_is_queued_then_a_worker_builds_it_and_a_failed_one_keeps_the_image(
    live_url: str, scratch_environment_name: str
) -> None:
    name = scratch_environment_name
    Environment.objects.create(name=name, requirements=[])
    response = requests.post(f"{live_url}/job-types/{name}/build", timeout=10)
    assert response.status_code == 202, response.text
    assert response.json()["build_status"] in ("queued", "building")  # a worker may have begun already
    assert response.json()["image_exists"] is False

    built = _settled(live_url, name)
    assert built["build_status"] == "built", built
    engine_ref = "tako-vm-{}@{}".format(name, docker.from_env(version="auto").images.get(f"tako-vm-{name}:latest").id)
    assert (built["image_exists"], built["image_ref"], built["build_error"]) == (True, engine_ref, None)
    assert built["built_at"] is not None

    Environment.objects.filter(name=name).update(requirements=["tako-no-such-package-zz9"])
    assert requests.post(f"{live_url}/job-types/{name}/build", timeout=10).status_code == 202
    failed = _settled(live_url, name)
    assert failed["build_status"] == "failed"
    assert "tako-no-such-package-zz9" in failed["build_error"]
    assert (failed["image_exists"], failed["image_ref"]) == (True, engine_ref)  # the previous image stays
    still = requests.post(f"{live_url}/execute", json={"code": "print('still here')", "job_type": name}, timeout=60)
    assert still.json()["stdout"] == "still here\n"


# -- the unit tier: no worker, no engine ----------------------------------------------------------
@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch, settings: Any) -> list[object]:
    """A web-only host whose every attempt to reach a sandbox is counted (and refused)."""
    settings.TAKO_WEB_USES_DOCKER = False
    asked: list[object] = []

    def refuse(config: object) -> None:
        asked.append(config)
        raise AssertionError("a request asked the Docker engine")

    monkeypatch.setattr(executions.sandbox, "_docker_sandbox", refuse)
    return asked


def test_a_second_build_request_while_one_is_queued_is_refused(api_nodocker, no_engine) -> None:
    first = api_nodocker.post("/job-types/default/build")
    assert first.status_code == 202
    assert first.json()["build_status"] == "queued"
    second = api_nodocker.post("/job-types/default/build")
    assert second.status_code == 409
    assert second.json()["detail"] == "A build of 'default' is already queued"
    assert no_engine == []


def test_job_types_and_the_environments_panel_read_the_stored_state(api_nodocker, no_engine) -> None:
    Environment.objects.filter(name="default").update(build_status="built", image_digest="sha256:" + "a" * 64)
    Environment.objects.create(name="never-built")
    listed = {item["name"]: item for item in api_nodocker.get("/job-types").json()}
    assert listed["default"]["image_exists"] is True
    assert listed["default"]["image_ref"] == "tako-vm-default@sha256:" + "a" * 64
    assert (listed["never-built"]["image_exists"], listed["never-built"]["image_ref"]) == (False, None)
    assert api_nodocker.get("/job-types/default").json()["image_exists"] is True

    admin = User.objects.create_user("boss", password="pw-for-tests-only", is_staff=True)
    client = Client()
    client.force_login(admin)
    panel = client.get("/ui/ops/?panel=environments", HTTP_HX_REQUEST="true").content.decode()
    assert "ready" in panel and "not built" in panel and "every 1s" not in panel
    queued = client.post("/ui/ops/environments/never-built/build/", HTTP_HX_REQUEST="true")
    assert "queued…" in queued.content.decode() and 'hx-trigger="every 1s"' in queued.content.decode()
    assert "Building the image of never-built" in queued["HX-Trigger"]
    assert no_engine == []


def test_a_build_records_its_version_which_jobs_then_select(live_url: str, scratch_environment_name: str) -> None:
    name = scratch_environment_name
    Environment.objects.create(name=name, requirements=[])
    engine = docker.from_env(version="auto")
    try:
        response = requests.post(f"{live_url}/job-types/{name}/build?version_tag=1.0", timeout=10)
        assert response.status_code == 202, response.text
        built = _settled(live_url, name)
        digest = engine.images.get(f"tako-vm-{name}:latest").id
        assert [(v["tag"], v["digest"]) for v in built["versions"]] == [("1.0", digest)]
        assert engine.images.get(f"tako-vm-{name}:1.0").id == digest  # kept under its tag
        for job_type in (f"{name}@1.0", f"{name}@{digest[:19]}"):
            ran = requests.post(
                f"{live_url}/execute", json={"code": "print('versioned')", "job_type": job_type}, timeout=60
            )
            assert ran.json()["stdout"] == "versioned\n", ran.text
            record = requests.get(f"{live_url}/executions/{ran.json()['execution_id']}?view=full", timeout=10).json()
            assert (record["job_version"], record["job_ref"]) == ("1.0", f"tako-vm-{name}@{digest}")
        again = requests.post(f"{live_url}/job-types/{name}/build?version_tag=1.0", timeout=10)
        assert again.status_code == 409  # a tag names one build
        unknown = requests.post(f"{live_url}/execute", json={"code": "1", "job_type": f"{name}@2.0"}, timeout=10)
        assert unknown.status_code == 422 and f"Unknown version '2.0' of job_type '{name}'" in unknown.json()["detail"]
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            engine.images.remove(f"tako-vm-{name}:1.0")
