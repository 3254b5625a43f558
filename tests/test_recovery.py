"""No job is lost: a worker killed mid-job, a job whose worker stopped beating, a lost claim."""

from __future__ import annotations

from datetime import timedelta

import docker
import requests
from django.utils import timezone

from executions import services
from executions.models import Environment, Execution
from executions.sandbox.docker import managed_labels
from tests.support import containers_of, submit, wait_for


def test_a_worker_killed_mid_job_leaves_no_job_running_and_no_container(live_service) -> None:
    url = live_service.url
    job_id = submit(url, "import time\nprint('working', flush=True)\ntime.sleep(120)")
    wait_for(lambda: Execution.objects.get(pk=job_id).stdout, what="the job's first output to be stored")
    live_service.worker.kill()  # SIGKILL to the whole cluster: nothing gets to clean up
    assert containers_of(job_id), "the orphaned container is still running"
    assert Execution.objects.get(pk=job_id).status == "running"

    live_service.restart_worker()
    record = wait_for(
        lambda: (r := requests.get(f"{url}/jobs/{job_id}/result", timeout=5).json()).get("ended_at") and r,
        what="the orphaned job to end",
    )
    assert (record["status"], record["error"]["type"]) == ("failed", "internal_error")
    assert "stopped before the job finished" in record["error"]["message"]
    assert record["stdout"] == "working\n"  # what it printed before the crash is kept
    assert containers_of(job_id) == []
    after = submit(url, "print('still working')")
    body = requests.get(f"{url}/jobs/{after}/result?wait=true", timeout=60).json()
    assert body["stdout"] == "still working\n"


def test_a_job_claimed_but_never_started_is_run_again(live_service) -> None:
    environment = Environment.objects.get(name="default")
    execution = services.execution_create(
        code="print('second chance')", input_data={}, environment=environment, is_async=True
    )
    Execution.objects.filter(pk=execution.pk).update(
        status="running", worker=f"{live_service.WORKER_NAME}:worker", started_at=timezone.now()
    )  # as if the worker died between claiming it and starting its container
    live_service.restart_worker()
    record = wait_for(
        lambda: (r := Execution.objects.get(pk=execution.pk)).is_terminal and r, what="the job to run again"
    )
    assert (record.status, record.stdout) == ("succeeded", "second chance\n")


def test_the_sweep_ends_jobs_whose_worker_stopped_beating(transactional_db, default_image: str) -> None:
    environment = Environment.objects.get(name="default")
    execution = services.execution_create(code="1", input_data={}, environment=environment)
    stale = timezone.now() - timedelta(minutes=5)
    Execution.objects.filter(pk=execution.pk).update(
        status="running", worker="gone-host:worker", heartbeat_at=stale, container_started_at=stale
    )
    client = docker.from_env(version="auto")
    client.containers.create(
        "tako-vm-default:latest", ["sleep", "60"], labels={**managed_labels(), "tako.execution_id": str(execution.pk)}
    )
    fresh = services.execution_create(code="1", input_data={}, environment=environment)
    Execution.objects.filter(pk=fresh.pk).update(
        status="running", worker="live-host:worker", heartbeat_at=timezone.now()
    )

    assert services.executions_recover(stale_after=30) == 1
    execution.refresh_from_db()
    assert (execution.status, execution.error_type) == ("failed", "internal_error")
    assert "gone-host:worker" in execution.error_message
    assert containers_of(str(execution.pk)) == []
    assert Execution.objects.get(pk=fresh.pk).status == "running"  # a live worker's job is left alone
    Execution.objects.filter(pk=fresh.pk).delete()


def test_every_job_ends_even_when_the_queue_stays_unavailable(transactional_db, monkeypatch, settings) -> None:
    """Submitted while the queue is down, a job is accepted and waits for it, queued (a short
    outage loses nothing); if the queue is still down past TAKO_OUTAGE_GRACE, the worker hosts'
    next try ends it, so nothing is left "queued" forever."""
    from executions.services import jobs

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(jobs, "async_task", broker_down)
    request = services.ExecuteRequest(code="print(1)", environment=Environment.objects.get(name="default"))
    admitted = services.execution_submit(request, submitter=services.Submitter(user=None, client_ip=None))
    execution = admitted.execution
    execution.refresh_from_db()
    assert admitted.created and execution.status == "queued" and not execution.dead_letters.exists()
    settings.TAKO_OUTAGE_GRACE = 60
    Execution.objects.filter(pk=execution.pk).update(created_at=timezone.now() - timedelta(seconds=61))
    services.executions_dispatch_waiting()
    execution.refresh_from_db()
    assert execution.status == "failed" and execution.error_type == "service_unavailable"
    assert execution.ended_at is not None  # terminal
    assert execution.dead_letters.count() == 1  # and an admin can requeue it


def test_a_job_whose_queued_task_was_lost_is_queued_again_and_runs(live_service) -> None:
    from executions.tasks import recover_stale_executions

    execution = services.execution_create(
        code="print('found again')", input_data={}, environment=Environment.objects.get(name="default"), is_async=True
    )
    # Handed to the queue two hours ago, and its task lost (never enqueued here).
    Execution.objects.filter(pk=execution.pk).update(dispatched_at=timezone.now() - timedelta(hours=2))
    recover_stale_executions()
    wait_for(lambda: Execution.objects.get(pk=execution.pk).is_terminal, timeout=60, what="the job to run")
    execution.refresh_from_db()
    assert (execution.status, execution.stdout) == ("succeeded", "found again\n")


def test_the_clusters_main_process_ends_stale_jobs_without_a_queued_task(db, monkeypatch) -> None:
    """Jobs left "running" (an end the database did not take) hold the worker budget, and every
    worker may be waiting for it: the sweep cannot wait in the queue behind them. The cluster's
    main process runs it itself, every few seconds."""
    from executions.management.commands.tako_worker import Housekeeping
    from executions.services import jobs

    monkeypatch.setattr(jobs, "async_task", lambda *args, **kwargs: None)
    environment = Environment.objects.get(name="default")
    execution = services.execution_create(code="1", input_data={}, environment=environment, is_async=True)
    stale = timezone.now() - timedelta(minutes=5)
    Execution.objects.filter(pk=execution.pk).update(
        status="running", worker="gone-host:worker", heartbeat_at=stale, dispatched_at=stale
    )  # its container never started: it is queued again
    housekeeping = Housekeeping()
    housekeeping.run_if_due(0.0)  # (just started: the start recovered this host's own jobs)
    assert Execution.objects.get(pk=execution.pk).status == "running"
    housekeeping.run_if_due(housekeeping._recovered_at + Housekeeping.STALE_EVERY_SECONDS)
    assert Execution.objects.get(pk=execution.pk).status == "queued"


def test_each_queue_runs_its_own_sweep_and_no_other(db, monkeypatch, settings) -> None:
    """Two deployments on one database (or one queue's tests beside another's): the sweep a cluster
    runs is its own, with its own settings, and its task goes to its own queue."""
    from django_q.conf import Conf
    from django_q.models import OrmQ, Schedule
    from django_q.scheduler import scheduler

    from executions.management.commands.tako_worker import ensure_schedules

    for queue in ("tako", "blue"):
        settings.TAKO_QUEUE_NAME = queue
        ensure_schedules()
        ensure_schedules()  # again on a restart: the same rows, not more
    sweeps = Schedule.objects.filter(func="executions.tasks.recover_stale_executions")
    assert sorted(sweeps.values_list("name", "cluster")) == [
        ("blue: recover stale executions", "blue"),
        ("tako: recover stale executions", "tako"),
    ]
    Schedule.objects.update(next_run=timezone.now() - timedelta(seconds=1))
    monkeypatch.setattr(Conf, "PREFIX", "blue")
    monkeypatch.setattr(Conf, "CLUSTER_NAME", "blue")
    monkeypatch.setattr(Conf, "ORM", "default")
    monkeypatch.setattr("django_q.scheduler.close_old_django_connections", lambda: None)  # the test's transaction
    from django_q.brokers.orm import ORM

    scheduler(broker=ORM(list_key="blue"))
    queued = list(OrmQ.objects.values_list("key", flat=True))
    assert queued == ["blue", "blue"], queued  # blue's sweep and prune, and nothing of tako's
    assert Schedule.objects.get(name="tako: recover stale executions").next_run < timezone.now()
