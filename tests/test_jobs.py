"""The async job lifecycle, end to end: daphne, a real qcluster, the real engine."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from executions.models import Execution
from tests.support import containers_of, job_containers, submit, wait_for


def test_submit_poll_result(live_url: str) -> None:
    job_id = submit(live_url, "import json\njson.dump({'n': 41 + 1}, open('/output/result.json', 'w'))")
    result = wait_for(
        lambda: (r := requests.get(f"{live_url}/jobs/{job_id}/result", timeout=5).json()).get("ended_at") and r,
        what="the result",
    )
    assert (result["status"], result["output"]) == ("succeeded", {"n": 42})
    status = requests.get(f"{live_url}/jobs/{job_id}", timeout=5).json()
    assert status["status"] == "succeeded" and status["started_at"] and status["queue_position"] is None


def test_wait_true_blocks_until_the_job_ends(live_url: str) -> None:
    job_id = submit(live_url, "import time; time.sleep(1); print('slept')")
    response = requests.get(f"{live_url}/jobs/{job_id}/result?wait=true&timeout=30&view=full", timeout=40)
    body = response.json()
    assert body["status"] == "succeeded" and body["stdout"] == "slept\n"
    assert "code_hash" in body  # view=full


def test_wait_times_out_with_408(live_url: str) -> None:
    job_id = submit(live_url, "import time; time.sleep(20)")
    response = requests.get(f"{live_url}/jobs/{job_id}/result?wait=true&timeout=1", timeout=10)
    assert response.status_code == 408
    assert response.json()["error"] == "Timeout waiting for job"
    requests.post(f"{live_url}/jobs/{job_id}/cancel", timeout=20)


def test_output_is_readable_while_the_job_runs(live_url: str) -> None:
    job_id = submit(live_url, "import time\nprint('early line')\ntime.sleep(5)\nprint('late')")
    record = wait_for(
        lambda: (r := requests.get(f"{live_url}/executions/{job_id}", timeout=5).json())["stdout"] and r,
        what="live stdout",
    )
    assert record["status"] == "running"
    assert record["stdout"] == "early line\n"
    requests.post(f"{live_url}/jobs/{job_id}/cancel", timeout=20)


def test_cancelling_a_running_job_stops_its_container(live_url: str) -> None:
    job_id = submit(live_url, "import time\nprint('started', flush=True)\ntime.sleep(60)")
    wait_for(lambda: Execution.objects.get(pk=job_id).container_started_at, what="the container")
    assert containers_of(job_id), "the container should be running"
    began = time.monotonic()
    response = requests.post(f"{live_url}/jobs/{job_id}/cancel", timeout=30)
    assert response.status_code == 200
    assert response.json() == {"status": "cancelled", "job_id": job_id, "job_status": "cancelled"}
    assert time.monotonic() - began < 10
    record = requests.get(f"{live_url}/jobs/{job_id}/result", timeout=5).json()
    assert (record["status"], record["error"]["type"]) == ("cancelled", "cancelled")
    # Killed before the answer; removed right after it, in the background.
    wait_for(lambda: containers_of(job_id) == [], timeout=10, what="the container's removal")
    again = requests.post(f"{live_url}/jobs/{job_id}/cancel", timeout=5)
    assert again.status_code == 409


def test_rerun_and_fork_keep_the_lineage(live_url: str) -> None:
    code = "import json\nd = json.load(open('/input/data.json'))\nprint(d['x'] * 2)"
    parent = submit(live_url, code, input_data={"x": 21})
    requests.get(f"{live_url}/jobs/{parent}/result?wait=true", timeout=40)
    rerun = requests.post(f"{live_url}/jobs/{parent}/rerun", timeout=10)
    assert rerun.status_code == 202
    assert rerun.json()["relationship"] == "rerun" and rerun.json()["parent_execution_id"] == parent
    fork_code = "import json\nd = json.load(open('/input/data.json'))\nprint(d['x'] + 1)"
    fork = requests.post(f"{live_url}/jobs/{parent}/fork", json={"code": fork_code, "timeout": 9}, timeout=10)
    assert fork.status_code == 202
    rerun_result = requests.get(f"{live_url}/jobs/{rerun.json()['job_id']}/result?wait=true&view=full", timeout=40)
    fork_result = requests.get(f"{live_url}/jobs/{fork.json()['job_id']}/result?wait=true&view=full", timeout=40)
    assert rerun_result.json()["stdout"] == "42\n" and rerun_result.json()["relationship"] == "rerun"
    assert fork_result.json()["stdout"] == "22\n" and fork_result.json()["parent_execution_id"] == parent
    assert Execution.objects.get(pk=fork.json()["job_id"]).timeout == 9


def test_artifacts_download_with_etag_and_304(live_url: str) -> None:
    job_id = submit(live_url, "open('/output/report.csv', 'w').write('a,b\\n1,2\\n')")
    requests.get(f"{live_url}/jobs/{job_id}/result?wait=true", timeout=40)
    url = f"{live_url}/jobs/{job_id}/artifacts/report.csv"
    response = requests.get(url, timeout=5)
    assert response.status_code == 200 and response.content == b"a,b\n1,2\n"
    assert response.headers["Content-Type"] == "text/csv"
    assert response.headers["Content-Length"] == "8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="report.csv"'
    etag = response.headers["ETag"]
    assert etag.startswith('"sha256:')
    assert requests.get(url, headers={"If-None-Match": etag}, timeout=5).status_code == 304
    head = requests.head(url, timeout=5)
    assert head.status_code == 200 and head.headers["ETag"] == etag and head.content == b""
    for bad in ("..%2F..%2Fsecret_key", "..", "report.csv%00", "nope.csv", "%2Fetc%2Fpasswd"):
        assert requests.get(f"{live_url}/jobs/{job_id}/artifacts/{bad}", timeout=5).status_code == 404, bad


def test_idempotency_keys(live_url: str) -> None:
    body = {"code": "print('once')", "idempotency_key": f"key-{uuid.uuid4().hex}"}
    first = requests.post(f"{live_url}/execute/async", json=body, timeout=10)
    second = requests.post(f"{live_url}/execute/async", json=body, timeout=10)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["job_id"] == second.json()["job_id"]
    conflict = requests.post(f"{live_url}/execute/async", json={**body, "code": "print('twice')"}, timeout=10)
    assert conflict.status_code == 409
    assert conflict.json()["existing_job_id"] == first.json()["job_id"]
    assert Execution.objects.filter(idempotency_key=body["idempotency_key"]).count() == 1


def test_a_job_is_never_run_twice_and_leaves_no_container(live_url: str) -> None:
    job_ids = [submit(live_url, f"print({n})") for n in range(6)]
    for job_id in job_ids:
        requests.get(f"{live_url}/jobs/{job_id}/result?wait=true", timeout=60)
    records = Execution.objects.filter(pk__in=job_ids)
    assert {r.status for r in records} == {"succeeded"}
    assert job_containers() == []


@pytest.mark.parametrize("path", ["/jobs/{id}", "/jobs/{id}/result", "/jobs/{id}/artifacts/x"])
def test_unknown_or_malformed_job_ids_are_404(live_url: str, path: str) -> None:
    for job_id in (str(uuid.uuid4()), "not-a-uuid", "..%2Fexecutions"):
        response = requests.get(live_url + path.format(id=job_id), timeout=5)
        assert response.status_code == 404
        assert response.headers["Content-Type"] == "application/json"


def test_the_submitting_requests_correlation_id_follows_the_job(live_service) -> None:
    correlation_id = f"trace-{uuid.uuid4().hex[:12]}"
    response = requests.post(
        f"{live_service.url}/execute/async",
        json={"code": "print(1)"},
        headers={"X-Correlation-ID": correlation_id},
        timeout=10,
    )
    assert response.headers["X-Correlation-ID"] == correlation_id
    job_id = response.json()["job_id"]
    record = requests.get(f"{live_service.url}/jobs/{job_id}/result?wait=true", timeout=60).json()
    assert record["correlation_id"] == correlation_id

    # "time level logger [correlation id] message": every line our code logged about the job. The
    # end is logged just after the result is committed, so a fast waiter may be a moment ahead of it.
    def logged() -> list[list[str]]:
        return [
            line.split()
            for line in live_service.worker.output().splitlines()
            if job_id in line and len(line.split()) > 4 and line.split()[3].startswith("executions.")
        ]

    ours = wait_for(
        lambda: len(logged()) >= 2 and logged(), timeout=10, what="the worker to log the job's start and end"
    )
    assert {fields[4] for fields in ours} == {f"[{correlation_id}]"}
