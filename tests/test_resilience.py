"""Circuit breaker, retries, dead letter queue, health, metrics and logs (in-process parts)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from datetime import timedelta

import docker
import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from executions import services
from executions.models import CircuitBreaker, DeadLetter, Environment, Execution
from executions.resilience import CircuitOpen, breaker_acquire, breaker_failure, breaker_state, breaker_success
from executions.sandbox.docker import DockerSandbox
from executions.services.environments import environment_version_record
from tests.support import ROOT

DEAD_ENGINE = "unix:///nonexistent/docker.sock"


def _dead_sandbox() -> DockerSandbox:
    return DockerSandbox(client=docker.DockerClient(base_url=DEAD_ENGINE, version="1.41", timeout=2))


def _open_breaker() -> None:
    for _ in range(5):
        breaker_failure("connection refused")


# -- the breaker ---------------------------------------------------------------------------------
def test_five_consecutive_failures_open_the_breaker(db) -> None:
    for _ in range(4):
        breaker_failure("boom")
    assert breaker_state()["state"] == "closed"
    breaker_failure("boom")
    state = breaker_state()
    assert (state["state"], state["failure_count"], state["last_failure"]) == ("open", 5, "boom")
    with pytest.raises(CircuitOpen, match="open after 5 consecutive failures"):
        breaker_acquire()


def test_a_success_resets_the_failure_count(db) -> None:
    for _ in range(4):
        breaker_failure("boom")
    breaker_success()
    breaker_failure("boom")
    assert breaker_state()["failure_count"] == 1


def test_after_the_reset_time_one_probe_then_two_successes_close_it(db) -> None:
    _open_breaker()
    CircuitBreaker.objects.update(opened_at=timezone.now() - timedelta(seconds=31))
    assert breaker_state()["state"] == "half_open"
    breaker_acquire()  # the probe
    with pytest.raises(CircuitOpen):
        breaker_acquire()  # only one at a time
    breaker_success()
    assert breaker_state()["state"] == "half_open"
    breaker_acquire()
    breaker_success()
    assert breaker_state()["state"] == "closed" and breaker_state()["failure_count"] == 0


def test_a_failed_probe_opens_it_again(db) -> None:
    _open_breaker()
    CircuitBreaker.objects.update(opened_at=timezone.now() - timedelta(seconds=31))
    breaker_acquire()
    breaker_failure("still down")
    assert breaker_state()["state"] == "open"
    with pytest.raises(CircuitOpen):
        breaker_acquire()


# -- retries and the dead letter queue -----------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_transient_fault_is_retried_then_dead_lettered(default_image: str, settings) -> None:
    settings.TAKO_RETRY_BASE_DELAY = 0.1
    environment = Environment.objects.get(name="default")
    execution = services.execution_create(
        code="print(1)", input_data={"k": 1}, environment=environment, correlation_id="trace-dlq", client_ip="127.0.0.1"
    )
    execution = services.execution_run(execution_id=execution.pk, sandbox=_dead_sandbox())
    assert (execution.status, execution.error_type) == ("failed", "service_unavailable")
    assert [a["attempt"] for a in execution.attempts] == [1, 2]
    assert breaker_state()["failure_count"] == 2
    entry = DeadLetter.objects.get(execution=execution)
    assert (entry.error_type, entry.retry_count, entry.correlation_id) == ("service_unavailable", 1, "trace-dlq")
    assert entry.job_data["code"] == "print(1)" and entry.job_data["input_data"] == {"k": 1}
    assert entry.job_data["job_type"] == "default" and entry.job_data["timeout"] == 30
    assert entry.client_ip == "127.0.0.1"


@pytest.mark.django_db(transaction=True)
def test_a_requeued_versioned_job_runs_on_its_versions_image_not_the_latest(
    default_image: str, scratch_environment_name: str, tmp_path, settings
) -> None:
    settings.TAKO_RETRY_BASE_DELAY = 0.1
    name, engine = scratch_environment_name, docker.from_env(version="auto")
    digests: dict[str, str] = {}
    try:
        for tag in ("v1", "latest"):  # two images, told apart by a file
            folder = tmp_path / tag
            folder.mkdir()
            (folder / "version.txt").write_text(tag)
            (folder / "Dockerfile").write_text(f"FROM {default_image}\nCOPY version.txt /version.txt\n")
            digests[tag] = engine.images.build(path=str(folder), tag=f"tako-vm-{name}:{tag}", rm=True)[0].id
        environment = Environment.objects.create(name=name, requirements=[], pool_size=0)
        version = environment_version_record(environment, digest=digests["v1"])
        environment_version_record(environment, digest=digests["latest"])
        code = "print(open('/version.txt').read())"
        dead = services.execution_create(code=code, input_data={}, environment=environment, version=version)
        dead = services.execution_run(execution_id=dead.pk, sandbox=_dead_sandbox())
        entry = DeadLetter.objects.get(execution=dead)
        requeued = services.execution_run(execution_id=services.dlq_requeue(entry=entry, by="test").pk)
        assert (requeued.status, requeued.stdout) == ("succeeded", "v1\n"), requeued.stderr
        assert requeued.job_ref == f"tako-vm-{name}@{digests['v1']}"
        plain = services.execution_create(code=code, input_data={}, environment=environment)
        assert services.execution_run(execution_id=plain.pk).stdout == "latest\n"  # what it would have run on
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            engine.images.remove(f"tako-vm-{name}:v1", force=True)


def test_failures_of_the_users_code_are_not_docker_failures(api) -> None:
    error_types = [
        api.post("/execute", {"code": code, "timeout": 1}).json()["error_type"]
        for code in ("1/0", "import sys; sys.exit(3)", "import time; time.sleep(5)")
    ]
    assert error_types[0] == "division_error" and error_types[2] == "timeout"
    assert "service_unavailable" not in error_types
    state = breaker_state()
    assert (state["state"], state["failure_count"]) == ("closed", 0)
    assert DeadLetter.objects.count() == 0


def test_a_sync_request_is_refused_at_once_while_the_breaker_is_open(api) -> None:
    _open_breaker()
    began = time.monotonic()
    body = api.post("/execute", {"code": "print(1)"}).json()
    assert time.monotonic() - began < 1.0
    assert (body["success"], body["error_type"]) == (False, "service_unavailable")
    assert "circuit breaker is open" in body["error"]
    assert DeadLetter.objects.filter(execution_id=body["execution_id"]).exists()


def test_async_submissions_are_refused_with_503_while_open(api_nodocker) -> None:
    _open_breaker()
    response = api_nodocker.post("/execute/async", {"code": "print(1)"})
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert response.json()["error_type"] == "service_unavailable"
    assert Execution.objects.count() == 0


def _entry(error_type: str = "internal_error") -> DeadLetter:
    environment = Environment.objects.get(name="default")
    execution = services.execution_create(code="print('again')", input_data={}, environment=environment)
    Execution.objects.filter(pk=execution.pk).update(status="failed", error_type=error_type, error_message="x")
    execution.refresh_from_db()
    entry = services.dead_letter_add(execution)
    assert entry is not None
    return entry


def test_the_dlq_lists_filters_and_counts(api_nodocker) -> None:
    first, _, third = _entry(), _entry("service_unavailable"), _entry()
    page = api_nodocker.get("/dlq?error_type=internal_error&limit=1").json()
    assert [item["id"] for item in page["items"]] == [third.pk] and page["has_more"] is True
    assert api_nodocker.get("/dlq?error_type=internal_error&limit=1&offset=1").json()["items"][0]["id"] == first.pk
    stats = api_nodocker.get("/dlq/stats").json()
    assert stats == {"total": 3, "by_error_type": {"internal_error": 2, "service_unavailable": 1}}


def test_deleting_an_entry(api_nodocker) -> None:
    entry = _entry()
    response = api_nodocker.request("DELETE", f"/dlq/{entry.pk}")
    assert response.json() == {"status": "removed", "entry_id": entry.pk}
    assert api_nodocker.request("DELETE", f"/dlq/{entry.pk}").status_code == 404


def test_requeueing_an_entry_makes_a_linked_job_once(api_nodocker) -> None:
    entry = _entry()
    response = api_nodocker.post(f"/dlq/{entry.pk}/requeue")
    assert response.status_code == 202
    job = Execution.objects.get(pk=response.json()["job_id"])
    assert (job.status, job.code, job.parent_execution_id) == ("queued", "print('again')", entry.execution_id)
    entry.refresh_from_db()
    assert entry.requeued_at is not None and entry.requeued_by == "anonymous 127.0.0.1"
    assert entry.requeued_execution_id == job.pk
    again = api_nodocker.post(f"/dlq/{entry.pk}/requeue")
    assert again.status_code == 409 and again.json()["existing_job_id"] == str(job.pk)
    assert api_nodocker.post("/dlq/999999/requeue").status_code == 404


def test_requeueing_is_refused_while_the_breaker_is_open(api_nodocker) -> None:
    entry = _entry()
    _open_breaker()
    response = api_nodocker.post(f"/dlq/{entry.pk}/requeue")
    assert response.status_code == 503
    entry.refresh_from_db()
    assert entry.requeued_at is None


# -- health, metrics, logs -----------------------------------------------------------------------
def test_health_is_healthy_with_docker_up_and_the_breaker_closed(api) -> None:
    api.get("/health")
    time.sleep(0.5)  # the first engine probe runs in the background
    body = api.get("/health").json()
    assert (body["status"], body["docker_available"], body["circuit_breaker"]["state"]) == ("healthy", True, "closed")
    assert set(body["queue_stats"]) == {"pending", "running", "max_workers", "max_queue_size"}


def test_health_is_degraded_while_the_breaker_is_open(api) -> None:
    _open_breaker()
    CircuitBreaker.objects.update(opened_at=timezone.now())
    body = api.get("/health").json()
    assert body["status"] == "degraded" and body["circuit_breaker"]["state"] == "open"


def test_metrics_are_prometheus_text(api) -> None:
    api.post("/execute", {"code": "1/0"})
    _entry()
    response = api.client.get("/metrics")
    assert response["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("tako_executions_total", (("error_type", "division_error"), ("status", "failed")))] == 1
    assert samples[("tako_circuit_breaker_state", (("state", "closed"),))] == 1
    assert samples[("tako_dlq_entries", ())] == 1
    assert samples[("tako_execution_run_seconds_count", ())] >= 1


def test_logs_can_be_json_lines_with_the_correlation_id() -> None:
    code = (
        "import logging\nfrom executions.correlation import correlation_context\n"
        "with correlation_context('trace-json'):\n    logging.getLogger('tako.test').warning('hello')"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**os.environ, "TAKO_LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(json.loads(text) for text in done.stderr.splitlines() if "hello" in text)
    assert (line["message"], line["correlation_id"], line["level"]) == ("hello", "trace-json", "WARNING")
    assert line["time"].endswith("Z")
