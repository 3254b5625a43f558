"""Real engine faults against the real service: Docker stops, hangs and comes back.

The service (daphne + a worker cluster) talks to the engine through DockerProxy, which the test
switches off (as when dockerd stops: connections refused and cut) and on again.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from executions.models import DeadLetter, Execution
from tests.dockerproxy import DockerProxy
from tests.support import job_containers, submit, wait_for


@pytest.fixture
def engine(docker_proxy):
    return docker_proxy


def managed_containers() -> list:
    return job_containers()


def health(url: str) -> dict:
    return requests.get(f"{url}/health", timeout=5).json()


def ended(job_id: str) -> Execution | None:
    execution = Execution.objects.get(pk=job_id)
    return execution if execution.is_terminal else None


def test_docker_stopping_and_returning(live_service, engine: DockerProxy) -> None:
    """Async jobs accepted before the breaker opened wait out the outage, queued, and run when the
    engine is back, with no human action; meanwhile new work is refused at once."""
    url = live_service.url
    engine.down()
    lost_at = time.monotonic()
    job_ids = [submit(url, f"print({n})") for n in range(3)]
    wait_for(
        lambda: Execution.objects.filter(pk__in=job_ids, engine_wait_since__isnull=False).count() == 3,
        timeout=60,
        what="the jobs to wait for an engine",
    )
    sync = requests.post(f"{url}/execute", json={"code": "print(1)"}, timeout=30).json()
    assert (sync["success"], sync["error_type"]) == (False, "service_unavailable")
    opened = wait_for(lambda: health(url)["circuit_breaker"]["state"] == "open", what="the breaker to open")
    opened_after = time.monotonic() - lost_at
    report = health(url)
    assert opened and report["status"] == "degraded" and report["docker_available"] is False

    # While open: the service keeps answering, and refuses new work at once; the jobs wait.
    assert requests.get(f"{url}/executions", timeout=5).status_code == 200
    assert requests.post(f"{url}/execute/async", json={"code": "1"}, timeout=5).status_code == 503
    sync = requests.post(f"{url}/execute", json={"code": "print(1)"}, timeout=10).json()
    assert (sync["success"], sync["error_type"]) == (False, "service_unavailable")
    entry = DeadLetter.objects.get(execution_id=sync["execution_id"])  # a sync run's failure is kept
    assert requests.post(f"{url}/dlq/{entry.pk}/requeue", timeout=5).status_code == 503
    # They wait queued and unclaimed while the breaker refuses; once it is due to reset, one of
    # them may be the probe (briefly running): none has ended.
    assert not any(Execution.objects.get(pk=job_id).is_terminal for job_id in job_ids)
    assert not DeadLetter.objects.filter(execution_id__in=job_ids).exists()

    engine.up()
    back_at = time.monotonic()
    wait_for(lambda: health(url)["circuit_breaker"]["state"] == "closed", timeout=60, what="the breaker to close")
    closed_after = time.monotonic() - back_at
    assert health(url)["status"] == "healthy"
    for job_id in job_ids:
        body = requests.get(f"{url}/jobs/{job_id}/result?wait=true&timeout=60", timeout=70).json()
        assert body["status"] == "succeeded", body
    ran_after = time.monotonic() - back_at
    assert not DeadLetter.objects.filter(execution_id__in=job_ids).exists()
    # Containers whose removal failed while Docker was away are gone once it is back.
    wait_for(lambda: not managed_containers(), timeout=30, what="leftover containers to be removed")
    print(
        f"\nbreaker opened {opened_after:.1f}s after Docker stopped; closed {closed_after:.1f}s after it returned;"
        f" the waiting jobs had all succeeded {ran_after:.1f}s after it returned"
    )


def test_a_hung_engine_does_not_hang_the_service(live_service, engine: DockerProxy) -> None:
    url = live_service.url
    health(url)
    engine.hang()
    try:
        health(url)  # starts a probe that will hang in the background
        timings = []
        for _ in range(5):
            began = time.monotonic()
            health(url)
            timings.append(time.monotonic() - began)
        assert max(timings) < 0.1, timings
        began = time.monotonic()
        body = requests.post(f"{url}/execute", json={"code": "print(1)"}, timeout=30).json()
        assert (body["success"], body["error_type"]) == (False, "service_unavailable")
        assert time.monotonic() - began < 15  # bounded by TAKO_DOCKER_TIMEOUT and the retries
    finally:
        engine.up()
    wait_for(lambda: health(url)["docker_available"], timeout=30, what="the engine to be seen again")


def test_soak_200_jobs_with_docker_gone_for_20_seconds(live_service, engine: DockerProxy) -> None:
    url = live_service.url
    wait_for(lambda: health(url)["circuit_breaker"]["state"] == "closed", timeout=60, what="a closed breaker")
    job_ids: list[str] = []
    lock = threading.Lock()

    def client(indexes: range) -> None:
        with requests.Session() as session:
            for n in indexes:
                # A well-behaved client: on 429 or 503 it waits and tries again (for up to 5 minutes:
                # jobs wait out the outage in the queue, so it stays full for a while after).
                for _ in range(1200):
                    response = session.post(f"{url}/execute/async", json={"code": f"print({n})"}, timeout=30)
                    if response.status_code == 202:
                        with lock:
                            job_ids.append(response.json()["job_id"])
                        break
                    assert response.status_code in (429, 503), response.text  # come back later
                    time.sleep(0.25)
                time.sleep(0.1)

    def outage() -> None:
        time.sleep(8)
        engine.down()
        time.sleep(20)
        engine.up()

    saboteur = threading.Thread(target=outage)
    saboteur.start()
    with ThreadPoolExecutor(4) as clients:
        list(clients.map(client, [range(i, 200, 4) for i in range(4)]))
    saboteur.join()
    assert len(job_ids) == 200

    deadline = time.monotonic() + 300
    while Execution.objects.filter(pk__in=job_ids, status__in=["queued", "running"]).exists():
        assert time.monotonic() < deadline, "jobs stuck in queued/running"
        time.sleep(1)
    succeeded = Execution.objects.filter(pk__in=job_ids, status="succeeded").count()
    dead = DeadLetter.objects.filter(execution_id__in=job_ids).count()
    others = Execution.objects.filter(pk__in=job_ids).exclude(status="succeeded").exclude(dead_letters__isnull=False)
    assert succeeded + dead == 200, [(e.status, e.error_type, e.error_message, e.exit_code) for e in others]
    # Jobs wait out the outage in the queue: nearly all succeed. A few may still be dead-lettered
    # (seen: 0 to 2 of 200, an intermittent fault still under investigation; issue 15's note).
    failed = Execution.objects.filter(pk__in=job_ids).exclude(status="succeeded")
    assert dead <= 5, [(e.status, e.error_type, e.error_message, e.stderr) for e in failed]
    # (a pooled container whose claim an engine fault cut off is removed by the keeper after 30 s)
    wait_for(lambda: not managed_containers(), timeout=90, what="leftover containers to be removed")
    # Each job that did not succeed, with what it says (to tell a run cut off mid-execution, which
    # is never repeated, from a start that should have waited out the outage).
    why = [(e.error_type, e.error_phase, e.warm_start, (e.error_message or "")[:200]) for e in failed]
    print(f"\nsoak: {succeeded} succeeded, {dead} dead-lettered of 200" + (f"; not succeeded: {why}" if why else ""))
