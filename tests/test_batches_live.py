"""Batches end to end: a real daphne, a real worker cluster, real containers."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import requests

from tests.support import wait_for

SQUARE = "import json\nn = json.load(open('/input/data.json'))['n']\nprint(n * n)\n"
SQUARE += "json.dump({'square': n * n}, open('/output/result.json', 'w'))"


def progress(url: str, batch_id: str) -> dict[str, Any]:
    response = requests.get(f"{url}/batches/{batch_id}", timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_every_input_runs_as_its_own_job_and_the_batch_ends_done(live_url: str) -> None:
    response = requests.post(
        f"{live_url}/execute/batch", json={"code": SQUARE, "inputs": [{"n": n} for n in range(6)]}, timeout=30
    )
    assert response.status_code == 202, response.text
    body = response.json()
    done = wait_for(lambda: (p := progress(live_url, body["batch_id"]))["done"] and p, timeout=120, what="the batch")
    assert (done["total"], done["counts"]) == (6, {"succeeded": 6})
    assert [item["job_id"] for item in done["items"]] == body["job_ids"]
    for n, job_id in enumerate(body["job_ids"]):
        record = requests.get(f"{live_url}/executions/{job_id}", timeout=10).json()
        assert (record["stdout"], record["output"]) == (f"{n * n}\n", {"square": n * n})
    page = requests.get(f"{live_url}/ui/batches/{body['batch_id']}/", timeout=10, allow_redirects=False)
    assert page.status_code == 302  # the page needs a login (the API allows anonymous use here)


def test_cancelling_a_batch_stops_the_running_jobs_and_the_queued_never_start(live_url: str) -> None:
    code = "import time\nprint('started', flush=True)\ntime.sleep(60)"
    body = requests.post(
        f"{live_url}/execute/batch", json={"code": code, "inputs": [{}] * 6, "timeout": 120}, timeout=30
    ).json()
    wait_for(lambda: progress(live_url, body["batch_id"])["counts"].get("running", 0) >= 1, what="a running job")
    began = time.monotonic()
    cancelled = requests.post(f"{live_url}/batches/{body['batch_id']}/cancel", timeout=60).json()
    assert cancelled["cancelled"] == 6
    done = wait_for(lambda: (p := progress(live_url, body["batch_id"]))["done"] and p, timeout=60, what="the end")
    assert time.monotonic() - began < 30  # nobody waited out a 60 s sleep
    assert done["counts"] == {"cancelled": 6}
    assert {item["error_type"] for item in done["items"]} == {"cancelled"}
    started = [requests.get(f"{live_url}/executions/{j}", timeout=10).json()["started_at"] for j in body["job_ids"]]
    assert None in started  # the queued ones never started


READ_FILE = "import json\nn = json.load(open('/input/data.json'))['n']\n"
READ_FILE += "print(open('/input/tables/labels.csv').read().splitlines()[n])"


def test_every_job_of_a_batch_reads_the_batchs_files_under_input(live_url: str) -> None:
    labels = b"zero\none\ntwo\n"
    body = {"code": READ_FILE, "inputs": [{"n": n} for n in range(3)]}
    by_json = requests.post(
        f"{live_url}/execute/batch",
        json={**body, "files": {"tables/labels.csv": base64.b64encode(labels).decode()}},
        timeout=30,
    )
    assert by_json.status_code == 202, by_json.text
    # The same as multipart/form-data, as curl -F sends it, through daphne.
    by_multipart = requests.post(
        f"{live_url}/execute/batch",
        files={
            "request": (None, json.dumps({**body, "inputs": [{"n": 2}]}), "application/json"),
            "file": ("tables/labels.csv", labels, "text/csv"),
        },
        timeout=30,
    )
    assert by_multipart.status_code == 202, by_multipart.text
    for submitted, expected in ((by_json, ["zero", "one", "two"]), (by_multipart, ["two"])):
        batch_id = submitted.json()["batch_id"]
        done = wait_for(lambda b=batch_id: (p := progress(live_url, b))["done"] and p, timeout=120, what="the batch")
        assert done["counts"] == {"succeeded": len(expected)}, done
        for job_id, label in zip(submitted.json()["job_ids"], expected, strict=True):
            record = requests.get(f"{live_url}/executions/{job_id}?view=full", timeout=10).json()
            assert record["stdout"] == f"{label}\n"
            assert [f["path"] for f in record["files"]] == ["tables/labels.csv"]
