"""Admission: every way of creating a job (API, pages, DLQ) obeys the same limits and answers the same way."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

from executions import services
from executions.models import ApiKey, Environment, Execution
from executions.resilience import breaker_failure


@pytest.fixture
def analyst(db) -> User:
    return User.objects.create_user("ana", password="pw-for-tests-only")


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _queued(user: User | None = None) -> Execution:
    environment = Environment.objects.get(name="default")
    return services.execution_create(code="print(1)", input_data={}, environment=environment, submitted_by=user)


NEW_FORM = {"code": "print(2)", "job_type": "default", "input_data": "{}", "submit_token": "0123456789abcdef"}


# -- the browser's New page ----------------------------------------------------------------------
def test_the_new_page_counts_against_the_callers_job_quota(analyst, settings) -> None:
    settings.TAKO_MAX_JOBS_IN_PROGRESS = 1
    key = ApiKey.issue(name="script", owner=analyst, scope="execute")[1]
    first = Client().post(
        "/execute/async", json.dumps({"code": "print(1)"}), content_type="application/json", HTTP_X_API_KEY=key
    )
    assert first.status_code == 202
    response = logged_in(analyst).post("/ui/new/", NEW_FORM, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "Too many jobs in progress (1)" in response.content.decode()
    assert Execution.objects.count() == 1


def test_the_new_page_refuses_while_the_breaker_is_open(analyst) -> None:
    for _ in range(5):
        breaker_failure("down")
    response = logged_in(analyst).post("/ui/new/", NEW_FORM, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "circuit breaker is open" in response.content.decode()
    assert Execution.objects.count() == 0


def test_the_new_page_shows_a_full_queue_in_the_form(analyst, settings) -> None:
    settings.TAKO_MAX_QUEUE_SIZE = 1
    _queued()
    response = logged_in(analyst).post("/ui/new/", NEW_FORM, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "The queue is full" in response.content.decode()
    assert Execution.objects.count() == 1


# -- Rerun in the browser ------------------------------------------------------------------------
def test_rerun_in_the_browser_with_a_full_queue_is_a_toast_not_a_500(analyst, settings) -> None:
    settings.TAKO_MAX_QUEUE_SIZE = 1
    parent = _queued(analyst)
    response = logged_in(analyst).post(f"/ui/executions/{parent.pk}/rerun/")
    assert response.status_code == 204 and "The queue is full" in response["HX-Trigger"]
    assert Execution.objects.count() == 1


def test_rerun_in_the_browser_counts_against_the_job_quota(analyst, settings) -> None:
    settings.TAKO_MAX_JOBS_IN_PROGRESS = 1
    parent = _queued(analyst)
    response = logged_in(analyst).post(f"/ui/executions/{parent.pk}/rerun/")
    assert response.status_code == 204 and "Too many jobs in progress" in response["HX-Trigger"]
    assert Execution.objects.count() == 1


# -- sync /execute with an idempotency key -------------------------------------------------------
@pytest.mark.docker
def test_a_sync_retry_with_the_same_key_returns_the_first_result_without_running_again(api) -> None:
    body = {"code": "import random; print(random.random())", "idempotency_key": "sync-retry-0001"}
    first = api.post("/execute", body)
    assert first.status_code == 200 and first.json()["success"] is True
    again = api.post("/execute", body)
    assert again.status_code == 200 and again.json() == first.json()  # the same run, the same random number
    assert Execution.objects.count() == 1
    conflict = api.post("/execute", {**body, "code": "print('other')"})
    assert conflict.status_code == 409
    assert conflict.json()["existing_job_id"] == first.json()["execution_id"]
    assert Execution.objects.count() == 1


def test_a_sync_request_with_an_async_jobs_key_and_another_payload_is_a_409(api_nodocker) -> None:
    body = {"code": "print(1)", "idempotency_key": "shared-key-0001"}
    job_id = api_nodocker.post("/execute/async", body).json()["job_id"]
    conflict = api_nodocker.post("/execute", {**body, "code": "print(2)"})
    assert conflict.status_code == 409 and conflict.json()["existing_job_id"] == job_id
    assert Execution.objects.count() == 1


def test_idempotency_keys_belong_to_their_caller(analyst) -> None:
    """Another caller's key is no way to read their job (or learn its id)."""
    other = User.objects.create_user("other", password="p")
    body = json.dumps({"code": "print(1)", "idempotency_key": "same-words-0001"})
    headers = [{"HTTP_X_API_KEY": ApiKey.issue(name="k", owner=user, scope="execute")[1]} for user in (analyst, other)]
    mine = Client().post("/execute/async", body, content_type="application/json", **headers[0])
    theirs = Client().post("/execute/async", body, content_type="application/json", **headers[1])
    assert (mine.status_code, theirs.status_code) == (202, 202)
    assert mine.json()["job_id"] != theirs.json()["job_id"]
