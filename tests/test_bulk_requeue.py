"""Bulk requeue of the dead letter queue: every matching entry once, by error type, time range or
ids; nothing while no engine works; a queue that fills up midway reports what it left."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from executions.errors import EngineUnavailable, InvalidRequest
from executions.models import DeadLetter, Environment, Execution
from executions.resilience import breaker_failure
from executions.services import dead_letter_add, dlq_requeue_matching
from executions.services.submissions import execution_create

pytestmark = pytest.mark.django_db


def dead(error_type: str, *, requeued: bool = False, age: timedelta = timedelta(0)) -> DeadLetter:
    execution = execution_create(code="print(1)", input_data={}, environment=Environment.objects.get(name="default"))
    Execution.objects.filter(pk=execution.pk).update(status="failed", error_type=error_type, error_message="boom")
    execution.refresh_from_db()
    entry = dead_letter_add(execution)
    assert entry is not None
    DeadLetter.objects.filter(pk=entry.pk).update(
        created_at=timezone.now() - age, requeued_at=timezone.now() if requeued else None
    )
    entry.refresh_from_db()
    return entry


def test_by_error_type_every_entry_not_yet_requeued_is_requeued_once() -> None:
    first, second = dead("service_unavailable"), dead("service_unavailable")
    dead("service_unavailable", requeued=True)
    other = dead("internal_error")
    done = dlq_requeue_matching(error_type="service_unavailable", by="ops")
    assert len(done.requeued) == 2 and done.skipped == []
    assert all(job.status == "queued" and job.is_async for _, job in done.requeued)
    assert set(DeadLetter.objects.filter(requeued_by="ops").values_list("pk", flat=True)) == {first.pk, second.pk}
    assert DeadLetter.objects.get(pk=other.pk).requeued_at is None
    assert dlq_requeue_matching(error_type="service_unavailable", by="ops").requeued == []  # once


def test_by_time_range_and_by_ids() -> None:
    old, recent = dead("internal_error", age=timedelta(hours=3)), dead("internal_error")
    done = dlq_requeue_matching(created_before=timezone.now() - timedelta(hours=1), by="ops")
    assert [(entry, job.pk) for entry, job in done.requeued] == [
        (old.pk, DeadLetter.objects.get(pk=old.pk).requeued_execution_id)
    ]
    done = dlq_requeue_matching(ids=[recent.pk, old.pk, 999999], by="ops")
    assert len(done.requeued) == 1
    assert sorted(done.skipped) == sorted([(old.pk, "already requeued"), (999999, "no such entry matches")])


def test_a_filter_is_required() -> None:
    with pytest.raises(InvalidRequest):
        dlq_requeue_matching(by="ops")


def test_nothing_is_requeued_while_no_engine_works(settings) -> None:
    settings.TAKO_WEB_USES_DOCKER = True
    entry = dead("service_unavailable")
    for _ in range(settings.TAKO_BREAKER_THRESHOLD):
        breaker_failure("engine gone")
    with pytest.raises(EngineUnavailable):
        dlq_requeue_matching(error_type="service_unavailable", by="ops")
    assert DeadLetter.objects.get(pk=entry.pk).requeued_at is None


def test_a_queue_that_fills_up_stops_it_and_reports_the_rest(settings) -> None:
    settings.TAKO_MAX_QUEUE_SIZE = 1
    entries = [dead("internal_error") for _ in range(3)]
    done = dlq_requeue_matching(error_type="internal_error", by="ops")
    assert len(done.requeued) == 1
    assert [entry_id for entry_id, _ in done.skipped] == [e.pk for e in entries[1:]]
    assert "queue is full" in done.skipped[0][1]


def test_the_operations_page_requeues_all_of_the_type_shown() -> None:
    for _ in range(2):
        dead("service_unavailable")
    dead("internal_error")
    client = Client()
    client.force_login(User.objects.create_user("boss", password="pw-for-tests-only", is_staff=True))
    response = client.post(
        "/ui/ops/dlq/requeue-matching/", {"error_type": "service_unavailable"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert json.loads(response["HX-Trigger"])["showToast"]["message"] == "Requeued 2 entries."
    assert DeadLetter.objects.filter(requeued_at__isnull=False).count() == 2
    page = client.get("/ui/ops/").content.decode()
    assert 'id="requeue-matching"' in page and 'id="waiting-for-engine"' in page and 'id="processes"' in page


def test_the_api_requeues_by_filter_and_answers_for_each_entry(api_nodocker) -> None:
    first, second = dead("service_unavailable"), dead("internal_error")
    body = api_nodocker.post("/dlq/requeue", {"ids": [first.pk, second.pk, 424242]}).json()
    assert body["requeued"] == 2 and {job["entry_id"] for job in body["jobs"]} == {first.pk, second.pk}
    assert body["skipped"] == [{"entry_id": 424242, "reason": "no such entry matches"}]
    assert api_nodocker.post("/dlq/requeue", {"error_type": "internal_error"}).json()["requeued"] == 0  # once
    refused = api_nodocker.post("/dlq/requeue", {})
    assert refused.status_code == 422 and "filter" in refused.json()["errors"]
    assert api_nodocker.post("/dlq/requeue", {"error_type": "oom"}).status_code == 422
