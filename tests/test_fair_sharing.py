"""Fair sharing (unit tier): a host's budget of containers, memory and CPU; a reserve long jobs
cannot take; turns between callers, weighted per API key; the queue position those turns give."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from executions.models import ApiKey, Environment, Execution
from executions.services import lifecycle
from executions.services.runs import worker_name
from executions.services.submissions import ExecuteRequest, Submitter, execution_create, execution_submit

pytestmark = pytest.mark.django_db

GIB = 1024**3


@pytest.fixture
def budget(settings: Any) -> Any:
    """A small host: 4 containers, 2 GiB, 2 CPUs (1 core, oversubscribed twice); a quarter reserved."""
    settings.TAKO_MAX_WORKERS = 4
    settings.TAKO_HOST_MEMORY = 2 * GIB
    settings.TAKO_HOST_CPUS = 1
    settings.TAKO_CPU_OVERSUBSCRIPTION = 2.0
    settings.TAKO_QUICK_RESERVE = 0.25
    settings.TAKO_QUICK_TIMEOUT = 30
    return settings


_clock = [timezone.now() - timedelta(hours=1)]


def job(
    caller: str = "ip:127.0.0.1",
    *,
    quick: bool = True,
    memory: int = GIB // 8,
    cpus: float = 0.25,
    weight: int = 1,
    status: str = "queued",
    worker: str = "",
) -> Execution:
    execution = execution_create(
        code="print(1)", input_data={}, environment=Environment.objects.get(name="default"), is_async=True
    )
    _clock[0] += timedelta(seconds=1)  # submitted in this order
    fields = {"caller": caller, "caller_weight": weight, "quick": quick, "memory_bytes": memory, "cpus": cpus}
    fields.update(status=status, worker=worker, created_at=_clock[0], dispatched_at=_clock[0])  # its task queued
    Execution.objects.filter(pk=execution.pk).update(**fields)
    execution.refresh_from_db()
    return execution


def running_here(**fields: Any) -> Execution:
    return job(status="running", worker=worker_name("worker"), **fields)


def claims(execution: Execution) -> bool:
    return lifecycle._claim_once(execution, worker_name("worker"))


# -- the budget ------------------------------------------------------------------------------------
def test_long_jobs_leave_the_reserve_to_quick_work(budget: Any) -> None:
    for _ in range(3):
        running_here(quick=False)
    assert not claims(job(quick=False))  # 3 of 4 containers: the long jobs' share is full
    assert claims(job(quick=True))  # a quick job takes the reserved one
    assert not claims(job(quick=True))  # 4 of 4


def test_the_memory_limits_of_running_jobs_add_up_to_the_hosts_memory(budget: Any) -> None:
    running_here(memory=GIB, quick=True)
    assert claims(job(memory=GIB // 2))
    assert not claims(job(memory=GIB // 2 + 1))  # 1.5 GiB + more than 0.5 GiB > 2 GiB
    assert not claims(job(memory=GIB // 4, quick=False))  # long jobs stop at 1.5 GiB


def test_cpu_limits_may_be_oversubscribed_up_to_the_factor(budget: Any) -> None:
    running_here(cpus=1.0)
    assert claims(job(cpus=1.0))  # 2.0 of 1 core oversubscribed twice
    assert not claims(job(cpus=0.1))


def test_a_job_larger_than_the_whole_budget_runs_alone(budget: Any) -> None:
    big = job(memory=8 * GIB, cpus=4.0)
    running = running_here()
    assert not claims(big)
    Execution.objects.filter(pk=running.pk).update(status="succeeded")
    assert claims(big)


def test_jobs_running_on_another_host_do_not_use_this_hosts_budget(budget: Any) -> None:
    for _ in range(4):
        job(status="running", worker="another-host:worker")
    assert claims(job())


# -- turns between callers -------------------------------------------------------------------------
def test_a_callers_backlog_does_not_hold_up_another_callers_jobs(budget: Any) -> None:
    a_running = [running_here(caller="key:1") for _ in range(2)]
    a_backlog = [job(caller="key:1") for _ in range(10)]
    b_jobs = [job(caller="key:2") for _ in range(3)]
    heads = lifecycle.caller_heads()
    assert [h.pk for h in heads] == [b_jobs[0].pk, a_backlog[0].pk]  # B has none running: B's turn
    token = a_backlog[5]  # whichever job's task a worker takes, it runs the fair one
    claimed = lifecycle.claim_next(token, worker=worker_name("worker"))
    assert claimed is not None and claimed.pk == b_jobs[0].pk
    # Positions (A runs 2, B now 1): B's next job first; then, even, the older (A's); then B's last.
    assert lifecycle.queue_position(Execution.objects.get(pk=b_jobs[1].pk)) == 1
    assert lifecycle.queue_position(Execution.objects.get(pk=a_backlog[0].pk)) == 2
    assert lifecycle.queue_position(Execution.objects.get(pk=b_jobs[2].pk)) == 3  # not after A's 10
    assert lifecycle.queue_position(Execution.objects.get(pk=a_backlog[9].pk)) == 12
    assert len(a_running) == 2


def test_turns_alternate_and_keep_each_callers_order() -> None:
    a = [job(caller="key:1") for _ in range(3)]
    b = [job(caller="key:2") for _ in range(3)]
    order = lifecycle.fair_order(list(Execution.objects.filter(status="queued").order_by("created_at")), {})
    assert [j.pk for j in order] == [a[0].pk, b[0].pk, a[1].pk, b[1].pk, a[2].pk, b[2].pk]


def test_a_key_of_weight_2_gets_two_turns_to_one() -> None:
    heavy = [job(caller="key:1", weight=2) for _ in range(4)]
    light = [job(caller="key:2") for _ in range(2)]
    order = [
        j.pk for j in lifecycle.fair_order(list(Execution.objects.filter(status="queued").order_by("created_at")), {})
    ]
    assert order[:3].count(light[0].pk) == 1 and order[:3].count(heavy[0].pk) + order[:3].count(heavy[1].pk) == 2
    assert order.index(heavy[1].pk) < order.index(light[1].pk) and order.index(heavy[3].pk) > order.index(light[0].pk)


def test_a_job_the_queue_could_not_take_is_run_by_no_other_jobs_task(budget: Any) -> None:
    """Accepted while the queue was down, it has no task yet: were another job's task to run it,
    that job would be left queued with no task at all. It runs once it is handed over."""
    undispatched = job()
    Execution.objects.filter(pk=undispatched.pk).update(dispatched_at=None)
    token = job()  # younger, but its task is the one a worker took
    claimed = lifecycle.claim_next(token, worker=worker_name("worker"))
    assert claimed is not None and claimed.pk == token.pk
    assert Execution.objects.get(pk=undispatched.pk).status == "queued"


def test_no_job_waiting_means_no_claim(budget: Any) -> None:
    token = job()
    Execution.objects.filter(pk=token.pk).update(status="cancelled")
    assert lifecycle.claim_next(token, worker=worker_name("worker")) is None


# -- admission records whose job it is and what it takes -------------------------------------------
def test_admission_records_the_caller_its_weight_and_the_jobs_share(budget: Any) -> None:
    owner = User.objects.create_user("analyst-b")
    key, _ = ApiKey.issue(name="b", owner=owner)
    ApiKey.objects.filter(pk=key.pk).update(weight=3)
    key.refresh_from_db()
    default = Environment.objects.get(name="default")
    submitter = Submitter(user=owner, client_ip="127.0.0.1", api_key=key)
    quick = execution_submit(ExecuteRequest(code="1", environment=default), submitter=submitter).execution
    long = execution_submit(ExecuteRequest(code="1", environment=default, timeout=31), submitter=submitter).execution
    packages = execution_submit(
        ExecuteRequest(code="1", environment=default, requirements=["six"]), submitter=submitter
    ).execution
    assert (quick.caller, quick.caller_weight, quick.quick) == (f"key:{key.pk}", 3, True)
    assert quick.memory_bytes == 512 * 1024**2 and quick.cpus == default.cpu_limit
    assert (long.quick, packages.quick) == (False, False)
    by_user = execution_submit(
        ExecuteRequest(code="1", environment=default), submitter=Submitter(user=owner, client_ip="127.0.0.1")
    ).execution
    anonymous = execution_submit(
        ExecuteRequest(code="1", environment=default), submitter=Submitter(user=None, client_ip="10.0.0.7")
    ).execution
    assert (by_user.caller, anonymous.caller) == (f"user:{owner.pk}", "ip:10.0.0.7")


def test_metrics_give_the_queue_wait_by_kind_of_caller_and_of_job() -> None:
    from executions.metrics import queue_wait_histogram

    def started(caller: str, *, waited: float, is_async: bool = True, quick: bool = True) -> None:
        execution = job(caller, quick=quick)
        Execution.objects.filter(pk=execution.pk).update(
            status="succeeded", is_async=is_async, started_at=execution.created_at + timedelta(seconds=waited)
        )

    started("key:1", waited=0.2)
    started("key:1", waited=3.0)
    started("key:1", waited=40.0, quick=False)
    started("ip:127.0.0.1", waited=0.01, is_async=False)
    job("user:5")  # still queued: no wait to report yet
    samples = {
        (s.name, s.labels.get("caller_class"), s.labels.get("job_class"), s.labels.get("le")): s.value
        for s in queue_wait_histogram().samples
    }
    assert samples[("tako_queue_wait_seconds_count", "api_key", "quick", None)] == 2
    assert samples[("tako_queue_wait_seconds_bucket", "api_key", "quick", "0.25")] == 1
    assert samples[("tako_queue_wait_seconds_bucket", "api_key", "quick", "5.0")] == 2
    assert samples[("tako_queue_wait_seconds_sum", "api_key", "quick", None)] == pytest.approx(3.2)
    assert samples[("tako_queue_wait_seconds_bucket", "api_key", "long", "30.0")] == 0
    assert samples[("tako_queue_wait_seconds_count", "anonymous", "sync", None)] == 1
    assert not any(caller_class == "user" for _, caller_class, _, _ in samples)


def test_an_admin_sets_a_keys_weight_when_issuing_it_and_afterwards(admin_user: User) -> None:
    from django.test import Client

    browser = Client()
    browser.force_login(admin_user)
    response = browser.post(
        "/admin/executions/apikey/add/", {"name": "nightly", "owner": admin_user.pk, "scope": "execute", "weight": 3}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    key = ApiKey.objects.get(name="nightly")
    assert key.weight == 3
    response = browser.post(
        f"/admin/executions/apikey/{key.pk}/change/",
        {"name": "nightly", "owner": admin_user.pk, "scope": "execute", "weight": 101},
    )
    assert response.status_code == 200 and "Ensure this value is less than or equal to 100" in response.content.decode()
