"""Runtimes per environment: the shipped `strict` job type runs under gVisor (runsc), warm pool
included; the response names the runtime used; an engine without a runtime fails the run as
service_unavailable naming it; /job-types shows each job type's runtime and whether engines have it."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from executions.models import CircuitBreaker, Environment
from executions.resilience import engine_runtimes_record, this_engine
from executions.sandbox import ContainerShape, RunSpec, SandboxUnavailable, get_sandbox
from executions.sandbox.images import ensure_image
from executions.services.heartbeats import Heartbeat

KERNEL = "import os; print(os.uname().release)"


@pytest.fixture
def strict(api: Any) -> Any:
    """The API, with the `strict` job type's image built (set-up builds it; a no-op when up to date)."""
    ensure_image("strict", requirements=[])
    return api


def test_strict_runs_under_gvisor_and_default_under_runc(strict: Any, container_path: str) -> None:
    gvisor = strict.post("/execute", {"code": KERNEL, "job_type": "strict"}).json()
    assert (gvisor["success"], gvisor["runtime"], gvisor["stdout"]) == (True, "runsc", "4.4.0\n"), gvisor
    runc = strict.post("/execute", {"code": KERNEL}).json()
    assert runc["runtime"] == "runc" and runc["stdout"] != "4.4.0\n"


def test_a_deployment_may_make_gvisor_the_default(strict: Any, settings: Any) -> None:
    settings.TAKO_DEFAULT_RUNTIME = "runsc"
    body = strict.post("/execute", {"code": KERNEL}).json()
    assert (body["runtime"], body["stdout"]) == ("runsc", "4.4.0\n")


def test_an_engine_without_the_runtime_fails_as_unavailable_naming_it(default_image: str) -> None:
    sandbox = get_sandbox()
    image_ref = sandbox.image_ref("tako-vm-default:latest")
    assert image_ref is not None
    shape = ContainerShape(image="tako-vm-default:latest", image_id=image_ref.partition("@")[2], runtime="kata")
    with pytest.raises(SandboxUnavailable, match=r"no such runtime.*kata"):
        sandbox.run(RunSpec(execution_id="no-such-runtime", shape=shape, code="print(1)", input_json="{}", timeout=5))


@pytest.mark.django_db
def test_gvisor_environments_have_no_network() -> None:
    environment = Environment(name="strict-net", runtime="runsc", network_enabled=True)
    with pytest.raises(ValidationError, match="run without a network"):
        environment.full_clean()


@pytest.mark.django_db
def test_job_types_show_the_runtime_and_whether_a_live_engine_has_it(api_nodocker: Any) -> None:
    def strict_shown() -> dict[str, Any]:
        return next(t for t in api_nodocker.get("/job-types").json() if t["name"] == "strict")

    assert strict_shown()["runtime"] == "runsc" and strict_shown()["runtime_available"] is None  # nobody said
    CircuitBreaker.objects.update_or_create(name=this_engine(), defaults={"seen_at": timezone.now()})
    engine_runtimes_record(["runc"])
    assert strict_shown()["runtime_available"] is False
    engine_runtimes_record(["runc", "runsc"])
    assert strict_shown()["runtime_available"] is True
    assert api_nodocker.get("/job-types/default").json()["runtime"] == "runc"


@pytest.mark.django_db
def test_a_worker_hosts_heartbeat_reports_its_engines_runtimes(docker_engine: Any) -> None:
    Heartbeat("worker", engine=this_engine()).beat()
    assert {"runc", "runsc"} <= set(CircuitBreaker.objects.get(name=this_engine()).runtimes)
