"""Tako VM's own Python client (PyPI `tako-vm`), unchanged, against this server under daphne."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import docker
import pytest
import requests
from tako_vm import TakoVM
from tako_vm.sdk.client import SDKExecutionError

from executions.models import Environment
from executions.sandbox import get_sandbox
from executions.sandbox.images import keep_version
from executions.services.environments import environment_version_record


@dataclass
class Numbers:
    a: int
    b: int


@dataclass
class Total:
    total: int


def add(numbers: Numbers) -> Total:
    return Total(total=numbers.a + numbers.b)


def divide(numbers: Numbers) -> Total:
    return Total(total=numbers.a // numbers.b)


def test_send_runs_a_typed_function(daphne_url: str) -> None:
    assert TakoVM(daphne_url).send(add, Numbers(a=2, b=40)) == Total(total=42)


def test_send_raw_reports_a_failure(daphne_url: str) -> None:
    result = TakoVM(daphne_url).send_raw(divide, Numbers(a=1, b=0))
    assert result.success is False
    assert result.error == "ZeroDivisionError: integer division or modulo by zero"
    assert result.exit_code == 1
    assert result.job_id  # our execution_id
    assert result.correlation_id


def test_the_clients_job_type_lookup_and_listing_work(daphne_url: str) -> None:
    client = TakoVM(daphne_url)
    assert client.get_job_type("default")["timeout"] == 30
    assert client.get_execution(client.send_raw(add, Numbers(a=1, b=1)).job_id)["status"] == "succeeded"
    assert client.list_executions()["count"] >= 1


def test_the_clients_async_lifecycle(daphne_url: str) -> None:
    client = TakoVM(daphne_url)
    code = "import json\nd = json.load(open('/input/data.json'))\nopen('/output/out.txt', 'w').write(str(d['n'] * 2))"
    job_id = client.submit_code(code, {"n": 21})
    result = client.get_result(job_id, timeout=60)
    assert result["status"] == "succeeded"
    assert client.download_artifact(job_id, "out.txt") == b"42"
    rerun_id = client.rerun(job_id)
    assert client.get_result(rerun_id, timeout=60)["status"] == "succeeded"
    fork_id = client.fork(job_id, "print('forked')")
    forked = client.get_result(fork_id, timeout=60, view="full")
    assert (forked["stdout"], forked["relationship"], forked["parent_execution_id"]) == ("forked\n", "fork", job_id)
    slow = client.submit_code("import time; time.sleep(60)")
    assert client.cancel(slow)["status"] == "cancelled"
    assert client.get_result(slow)["status"] == "cancelled"


def test_the_client_runs_a_version_of_a_job_type_by_tag_or_digest(daphne_url: str) -> None:
    """Tako VM 0.3.0's `job_type: "name@version"`: the build recorded as a version, kept under its tag."""
    digest = get_sandbox().images.image_id("tako-vm-default:latest")  # type: ignore[attr-defined]
    version = environment_version_record(Environment.objects.get(name="default"), digest=digest, tag="0.3.0-test")
    kept = keep_version("default", digest, version.tag)
    try:
        client = TakoVM(daphne_url)
        assert client.send(add, Numbers(a=1, b=2), job_type="default@0.3.0-test") == Total(total=3)
        result = client.send_raw(add, Numbers(a=2, b=2), job_type=f"default@{digest[:19]}")
        assert result.success
        record = requests.get(f"{daphne_url}/executions/{result.job_id}?view=full", timeout=10).json()
        assert (record["job_version"], record["job_ref"]) == ("0.3.0-test", f"tako-vm-default@{digest}")
        with pytest.raises(SDKExecutionError) as refused:
            client.send(add, Numbers(a=1, b=1), job_type="default@9.9.9")
        assert "Client error 422 on POST /execute: Unknown version '9.9.9' of job_type 'default'" in str(refused.value)
        listed = client.get_job_type("default")["versions"]
        assert {"tag": "0.3.0-test", "digest": digest} in [{k: v[k] for k in ("tag", "digest")} for v in listed]
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker.from_env(version="auto").images.remove(kept)  # the tag only: :latest keeps the image
