"""The job endpoints' contract without a cluster: validation, queue limits, cancel before start."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from executions import services
from executions.models import Environment, Execution


def _queued(api) -> str:
    response = api.post("/execute/async", {"code": "print(1)"})
    assert response.status_code == 202
    return response.json()["job_id"]


def test_a_queued_job_reports_its_position(api_nodocker) -> None:
    first, second = _queued(api_nodocker), _queued(api_nodocker)
    assert api_nodocker.get(f"/jobs/{first}").json()["queue_position"] == 1
    body = api_nodocker.get(f"/jobs/{second}/result").json()
    assert body == {"job_id": second, "status": "queued", "message": "Job still in progress", "queue_position": 2}


def test_cancelling_a_queued_job_means_it_never_starts(api_nodocker) -> None:
    job_id = _queued(api_nodocker)
    response = api_nodocker.post(f"/jobs/{job_id}/cancel")
    assert response.json() == {"status": "cancelled", "job_id": job_id, "job_status": "cancelled"}
    record = api_nodocker.get(f"/jobs/{job_id}/result").json()
    assert (record["status"], record["error"]["type"]) == ("cancelled", "cancelled")
    assert services.execution_run(execution_id=job_id).status == "cancelled"  # a late worker skips it
    assert Execution.objects.get(pk=job_id).started_at is None


def test_cancelling_an_ended_job_is_a_409(api_nodocker) -> None:
    job_id = _queued(api_nodocker)
    Execution.objects.filter(pk=job_id).update(status="succeeded")
    response = api_nodocker.post(f"/jobs/{job_id}/cancel")
    assert response.status_code == 409
    assert response.json()["detail"] == "Job already ended (succeeded); nothing to cancel"


def test_a_full_queue_refuses_with_503_and_retry_after(api_nodocker, settings) -> None:
    settings.TAKO_MAX_QUEUE_SIZE = 1
    _queued(api_nodocker)
    for path in ("/execute/async", "/execute"):
        response = api_nodocker.post(path, {"code": "print(1)"})
        assert response.status_code == 503
        assert response["Retry-After"] == "5"
        assert response.json()["error_type"] == "service_unavailable"
    assert Execution.objects.count() == 1


@pytest.mark.parametrize("query", ["wait=true&timeout=0", "wait=true&timeout=301", "wait=maybe", "timeout=x"])
def test_bad_wait_parameters_are_400(api_nodocker, query: str) -> None:
    job_id = _queued(api_nodocker)
    response = api_nodocker.get(f"/jobs/{job_id}/result?{query}")
    assert response.status_code == 400


def test_fork_without_code_is_a_422(api_nodocker) -> None:
    job_id = _queued(api_nodocker)
    for body in ({}, {"code": ""}, {"code": "1", "extra": 1}):
        response = api_nodocker.post(f"/jobs/{job_id}/fork", body)
        assert response.status_code == 422


def test_rerun_can_change_the_job_type_and_timeout(api_nodocker) -> None:
    job_id = _queued(api_nodocker)
    response = api_nodocker.post(f"/jobs/{job_id}/rerun", {"job_type": "data-processing", "timeout": 7})
    child = Execution.objects.get(pk=response.json()["job_id"])
    assert (child.job_type, child.timeout, child.relationship) == ("data-processing", 7, "rerun")
    assert str(child.parent_execution_id) == job_id
    assert api_nodocker.post(f"/jobs/{job_id}/rerun", {"job_type": "nope"}).status_code == 422


def test_rerun_accepts_an_empty_body(api_nodocker) -> None:
    job_id = _queued(api_nodocker)
    response = api_nodocker.post(f"/jobs/{job_id}/rerun", "", content_type="application/json")
    assert response.status_code == 202


def test_pool_stats(api_nodocker, settings) -> None:
    _queued(api_nodocker)
    stats = api_nodocker.get("/pool/stats").json()
    queue = {"pending": 1, "running": 0, "max_workers": settings.TAKO_MAX_WORKERS, "max_queue_size": 100}
    assert stats == {**queue, "warm_pool": {}}  # no keeper has reported a pool, and no job ran


def test_unknown_job_is_404_everywhere(api_nodocker) -> None:
    missing = uuid.uuid4()
    for method, path in [("GET", "/jobs/{}"), ("POST", "/jobs/{}/cancel"), ("POST", "/jobs/{}/rerun")]:
        response = api_nodocker.request(method, path.format(missing))
        assert response.status_code == 404 and response.json()["detail"] == "Job not found"


@pytest.mark.django_db(transaction=True)
def test_sync_and_async_runs_share_one_worker_budget(default_image: str, settings) -> None:
    settings.TAKO_MAX_WORKERS = 1
    environment = Environment.objects.get(name="default")
    busy = services.execution_create(code="1", input_data={}, environment=environment)
    # One slot taken, by this host's worker (another host's runs use that host's budget).
    Execution.objects.filter(pk=busy.pk).update(status="running", worker=services.worker_name("worker"))
    waiting = services.execution_create(code="print('my turn')", input_data={}, environment=environment)
    runner = threading.Thread(target=lambda: services.execution_run(execution_id=waiting.pk, role="web"))
    runner.start()
    time.sleep(1.0)
    assert Execution.objects.get(pk=waiting.pk).status == "queued"  # waits for the slot
    Execution.objects.filter(pk=busy.pk).update(status="succeeded")
    runner.join(timeout=30)
    waiting.refresh_from_db()
    assert (waiting.status, waiting.stdout) == ("succeeded", "my turn\n")
