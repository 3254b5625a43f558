"""Bounded load on loopback: 300 async jobs from 8 concurrent clients against the real service."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import docker
import requests

from executions.models import Execution

JOBS = 300
CLIENTS = 8


def test_300_jobs_from_8_clients_all_end_once(live_service) -> None:
    url = live_service.url
    # Containers started for a job (labelled with it), streamed as they happen (the engine keeps
    # only its last 256 events). A job that ran in a warm pool's container started none.
    event_stream = docker.from_env(version="auto").events(
        filters={"type": "container", "event": "start", "label": "tako.execution_id"}, decode=True
    )
    started: list[str] = []
    watcher = threading.Thread(
        target=lambda: started.extend(e["Actor"]["Attributes"]["tako.execution_id"] for e in event_stream),
        daemon=True,
    )
    watcher.start()

    refused = []

    def submit(n: int) -> str:
        """A well-behaved client: told to come back later (429 too many in progress, 503 queue full),
        it waits and tries again."""
        with requests.Session() as session:
            for _ in range(600):
                response = session.post(f"{url}/execute/async", json={"code": f"print({n})"}, timeout=30)
                if response.status_code not in (429, 503):
                    break
                assert response.headers["Retry-After"] == "5"
                refused.append(n)
                time.sleep(0.5)
        assert response.status_code == 202, response.text
        return response.json()["job_id"]

    with ThreadPoolExecutor(CLIENTS) as clients:
        job_ids = list(clients.map(submit, range(JOBS)))
    assert len(set(job_ids)) == JOBS
    assert refused, "with 300 jobs, a queue of 100 and 50 in progress per caller, some were told to come back later"

    deadline = time.monotonic() + 600
    while Execution.objects.filter(pk__in=job_ids, status__in=["queued", "running"]).exists():
        assert time.monotonic() < deadline, "jobs did not all end within 10 minutes"
        time.sleep(1)

    records = {str(r.pk): r for r in Execution.objects.filter(pk__in=job_ids)}
    failures = {(r.status, r.error_type, r.error_message) for r in records.values() if r.status != "succeeded"}
    assert not failures, f"every job succeeded; these did not: {failures}"
    assert all(records[job_id].stdout == f"{n}\n" for n, job_id in enumerate(job_ids)), "each ran its own code"

    # None ran twice: each job got exactly one container, started for it or from the warm pool.
    time.sleep(1)
    event_stream.close()
    watcher.join(timeout=10)
    warm = [job_id for job_id in job_ids if records[job_id].warm_start]
    assert sorted([s for s in started if s in records] + warm) == sorted(job_ids)
    assert "database is locked" not in live_service.output()
