"""Webhooks end to end: a real daphne, a real worker cluster (with its webhook cluster beside it),
real jobs on the engine, and real receivers on loopback (TAKO_WEBHOOK_ALLOW_PRIVATE=1 for these
tests alone). The receivers check the signature as a user's would; the deliveries' latency after
each job's end is measured and printed."""

from __future__ import annotations

import json
import statistics
import time
from datetime import datetime
from typing import Any

import pytest
import requests
from django.contrib.auth.models import User

from executions.models import ApiKey
from tests.support import Receiver, submit, verify_signature, wait_for

SECRET = "live-deployment-secret"
LATENCY_JOBS = 20


@pytest.fixture(scope="module")
def _webhook_service(_live_service: Any) -> Any:
    """The live service, restarted to allow loopback receivers, with retries 0.5 s apart and a
    2 s answer timeout so that a failing receiver's schedule fits in a test."""
    _live_service.restart(
        TAKO_WEBHOOK_ALLOW_PRIVATE="1",
        TAKO_WEBHOOK_SECRET=SECRET,
        TAKO_WEBHOOK_BACKOFF_SECONDS="0.5",
        TAKO_WEBHOOK_TIMEOUT="2",
    )
    yield _live_service
    _live_service.restart()


@pytest.fixture
def service(transactional_db: None, _webhook_service: Any) -> Any:
    return _webhook_service


@pytest.fixture
def receiver() -> Any:
    server = Receiver()
    yield server
    server.close()


def attempts(url: str, job_id: str) -> list[dict[str, Any]]:
    response = requests.get(f"{url}/jobs/{job_id}/webhooks", timeout=10)
    assert response.status_code == 200
    return list(response.json())


def ended_at(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["ended_at"].replace("Z", "+00:00")).timestamp()


def test_a_finished_job_is_posted_its_record_signed(service: Any, receiver: Receiver) -> None:
    job_id = submit(service.url, "print('hooked')", webhook_url=receiver.url)
    wait_for(lambda: receiver.received, what="the webhook")
    [(headers, body, _)] = receiver.received
    assert verify_signature(headers, body, SECRET)
    assert (headers["X-Tako-Event"], headers["Content-Type"]) == ("execution.finished", "application/json")
    record = requests.get(f"{service.url}/executions/{job_id}", timeout=10).json()
    assert json.loads(body) == record  # the default view, as GET /executions/{id} answers it
    assert (record["status"], record["stdout"]) == ("succeeded", "hooked\n")
    listed = wait_for(lambda: attempts(service.url, job_id), what="the recorded attempt")
    assert [(a["attempt"], a["status_code"], a["error"]) for a in listed] == [(1, 200, None)]


def test_a_receiver_answering_500_then_200_is_retried_and_the_job_is_unaffected(service: Any) -> None:
    receiver = Receiver(answers=[500])
    try:
        code = "import json\nprint('result intact')\njson.dump({'n': 42}, open('/output/result.json', 'w'))"
        job_id = submit(service.url, code, webhook_url=receiver.url)
        wait_for(lambda: len(receiver.received) >= 2, what="the retry")
        listed = wait_for(lambda: len(attempts(service.url, job_id)) >= 2 and attempts(service.url, job_id))
    finally:
        receiver.close()
    assert [(a["attempt"], a["status_code"], a["error"]) for a in listed] == [
        (1, 500, "HTTP 500 Internal Server Error"),
        (2, 200, None),
    ]
    first, second = (datetime.fromisoformat(a["at"].replace("Z", "+00:00")) for a in listed)
    assert (second - first).total_seconds() >= 0.5  # TAKO_WEBHOOK_BACKOFF_SECONDS
    deliveries = {headers["X-Tako-Delivery"] for headers, _, _ in receiver.received}
    assert len(deliveries) == 1  # one delivery id across attempts: the receiver can drop repeats
    assert all(verify_signature(headers, body, SECRET) for headers, body, _ in receiver.received)
    result = requests.get(f"{service.url}/jobs/{job_id}/result", timeout=10).json()
    assert (result["status"], result["stdout"], result["output"], result["error"]) == (
        "succeeded",
        "result intact\n",
        {"n": 42},
        None,
    )


def test_a_keys_jobs_are_signed_with_its_webhook_secret(service: Any, receiver: Receiver) -> None:
    owner = User.objects.create_user("scripts", password="pw-for-tests-only")
    key, secret = ApiKey.issue(name="hooks", owner=owner)
    response = requests.post(
        f"{service.url}/execute/async",
        json={"code": "print(1)", "webhook_url": receiver.url},
        headers={"X-API-Key": secret},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    wait_for(lambda: receiver.received, what="the webhook")
    [(headers, body, _)] = receiver.received
    assert verify_signature(headers, body, key.webhook_secret) and not verify_signature(headers, body, SECRET)


def run_plain(url: str) -> float:
    started = time.monotonic()
    job_id = submit(url, "print('not delayed')")
    result = requests.get(f"{url}/jobs/{job_id}/result?wait=true&timeout=30", timeout=40).json()
    assert result["stdout"] == "not delayed\n"
    return time.monotonic() - started


def status(url: str, job_id: str) -> str:
    return str(requests.get(f"{url}/jobs/{job_id}", timeout=10).json()["status"])


def test_hanging_receivers_delay_no_job(service: Any) -> None:
    """Deliveries that each hang until their 2 s timeout, three times as many as there are webhook
    workers: a plain job run while they hang takes no longer than it does alone. (Were deliveries
    run by the jobs' 2 workers, it would wait for one, up to 2 s.)"""
    alone = min(run_plain(service.url) for _ in range(2))
    hanging = Receiver(delay=5)
    try:
        hooked = [submit(service.url, "print(1)", webhook_url=hanging.url) for _ in range(6)]
        wait_for(lambda: all(status(service.url, job) == "succeeded" for job in hooked), what="the hooked jobs")
        wait_for(lambda: len(hanging.received) >= 2, what="the hanging deliveries")
        beside = run_plain(service.url)
        still_hanging = 6 - len(hanging.received)
        # Checked while the receiver still hangs: once it closes, the deliveries not yet made are refused.
        timed_out = wait_for(
            lambda: [
                attempt
                for job in hooked
                for attempt in attempts(service.url, job)
                if attempt["error"] == "No answer within 2 s"
            ],
            what="a timed-out attempt",
        )
    finally:
        hanging.close()
    print(f"\na plain job alone: {alone:.2f} s; beside hanging deliveries ({still_hanging} to come): {beside:.2f} s")
    assert still_hanging > 0  # it really ran while deliveries hung
    assert beside < alone + 1.0
    assert all(attempt["status_code"] is None for attempt in timed_out)


def test_delivery_latency_after_the_job_ends(service: Any, receiver: Receiver) -> None:
    latencies = []
    for n in range(LATENCY_JOBS):
        submit(service.url, f"print({n})", webhook_url=receiver.url)
        wait_for(lambda n=n: len(receiver.received) > n, what=f"webhook {n + 1}")
        _, body, arrived = receiver.received[n]
        latencies.append((arrived - ended_at(json.loads(body))) * 1000)
    latencies.sort()
    p50, p90 = statistics.median(latencies), latencies[int(0.9 * len(latencies)) - 1]
    print(
        f"\nwebhook delivery latency after job end, {LATENCY_JOBS} jobs: p50 {p50:.0f} ms, p90 {p90:.0f} ms, "
        f"min {latencies[0]:.0f} ms, max {latencies[-1]:.0f} ms"
    )
    assert p50 < 2000
