"""Fair sharing through the real service (daphne + a worker cluster of 4): one caller's backlog
does not hold up another caller's jobs, and the queue position says so."""

from __future__ import annotations

import requests
from django.contrib.auth.models import User

from executions.models import ApiKey, Execution
from tests.support import wait_for


def key_for(name: str) -> str:
    return ApiKey.issue(name=name, owner=User.objects.create_user(name))[1]


def submit_as(url: str, key: str, code: str) -> str:
    response = requests.post(f"{url}/execute/async", json={"code": code}, headers={"X-API-Key": key}, timeout=10)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def test_a_backlog_of_one_caller_does_not_hold_up_anothers_quick_jobs(live_url: str) -> None:
    alice, bob = key_for("analyst-a"), key_for("analyst-b")
    backlog = [submit_as(live_url, alice, "import time; time.sleep(1)") for _ in range(10)]
    # A's jobs (30 s timeouts: long) fill what long jobs may use of the budget, and wait.
    wait_for(lambda: Execution.objects.filter(pk__in=backlog, status="running").count() >= 2, what="A's jobs")
    assert Execution.objects.filter(pk__in=backlog, status="running").count() <= 3  # a quarter left to quick work
    a_started = Execution.objects.filter(pk__in=backlog).exclude(started_at=None).count()
    quick = [submit_as(live_url, bob, f"print({n})") for n in range(3)]
    position = requests.get(f"{live_url}/jobs/{quick[0]}", headers={"X-API-Key": bob}, timeout=5).json()
    assert position["status"] != "queued" or position["queue_position"] == 1  # B's turn comes first

    for job_id in quick:
        body = requests.get(
            f"{live_url}/jobs/{job_id}/result?wait=true&timeout=60", headers={"X-API-Key": bob}, timeout=70
        ).json()
        assert body["status"] == "succeeded", body
    b_started = max(Execution.objects.get(pk=job_id).started_at for job_id in quick)
    a_started_before = Execution.objects.filter(pk__in=backlog, started_at__lt=b_started).count()
    # Those started when B came, and at most one more turn each while B's 3 took theirs: not 10.
    assert a_started_before <= a_started + 3, (a_started_before, a_started)
    for job_id in backlog:  # and A's backlog all ran, once each
        wait_for(lambda job_id=job_id: Execution.objects.get(pk=job_id).is_terminal, timeout=60, what="A's backlog")
    assert set(Execution.objects.filter(pk__in=backlog).values_list("status", flat=True)) == {"succeeded"}
