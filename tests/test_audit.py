"""The audit log: every admin action recorded with who, when, what and the correlation id;
read in GET /audit (admin scope) and on the audit page; kept by the retention setting."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from executions import services
from executions.models import ApiKey, AuditEvent, DeadLetter, Environment, Execution

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(admin_user: User) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def dead_letter() -> DeadLetter:
    execution = services.execution_create(
        code="print(1)", input_data={}, environment=Environment.objects.get(name="default"), is_async=True
    )
    Execution.objects.filter(pk=execution.pk).update(status="failed", error_type="internal_error")
    execution.refresh_from_db()
    entry = services.dead_letter_add(execution)
    assert entry is not None
    return entry


def test_requeue_and_delete_from_the_api_are_recorded_with_the_correlation_id(
    admin_client: Client, monkeypatch: Any
) -> None:
    from executions.services import submissions

    monkeypatch.setattr(submissions, "execution_dispatch", lambda execution: None)
    first, second = dead_letter(), dead_letter()
    requeued = admin_client.post(f"/dlq/{first.pk}/requeue", HTTP_X_CORRELATION_ID="trace-requeue-1")
    assert requeued.status_code == 202, requeued.content
    assert admin_client.delete(f"/dlq/{second.pk}", HTTP_X_CORRELATION_ID="trace-delete-1").status_code == 200
    events = {e.action: e for e in AuditEvent.objects.all()}
    assert events["dlq.requeue"].actor == "admin" and events["dlq.requeue"].target == f"dlq:{first.pk}"
    assert events["dlq.requeue"].correlation_id == "trace-requeue-1"
    assert events["dlq.requeue"].detail["execution_id"] == requeued.json()["job_id"]
    assert (events["dlq.delete"].target, events["dlq.delete"].correlation_id) == (f"dlq:{second.pk}", "trace-delete-1")


def test_a_key_callers_actions_name_the_key(admin_user: User, monkeypatch: Any) -> None:
    from executions.services import environments

    monkeypatch.setattr(environments, "async_task", lambda *args, **kwargs: None)
    key = ApiKey.issue(name="ops-script", owner=admin_user, scope="admin")
    response = Client().post("/job-types/default/build", HTTP_X_API_KEY=key[1])
    assert response.status_code == 202, response.content
    event = AuditEvent.objects.get(action="environment.build")
    assert event.actor == f"admin (key {key[0].prefix}…)" and event.target == "environment:default"


def test_changes_in_the_admin_are_recorded(admin_client: Client) -> None:
    default = Environment.objects.get(name="default")
    form = {f: getattr(default, f) for f in ("name", "memory_limit", "cpu_limit", "timeout", "startup_timeout")}
    form.update(python_version=default.python_version, pool_size=3, env_vars="{}", requirements="[]")
    form.update(build_status=default.build_status)
    response = admin_client.post(f"/admin/executions/environment/{default.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    event = AuditEvent.objects.get(action="admin.environment.change")
    assert event.actor == "admin" and "default" in event.target and "Pool size" in str(event.detail)
    User.objects.create_user("someone")
    user = User.objects.get(username="someone")
    admin_client.post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"})
    assert AuditEvent.objects.filter(action="admin.user.delete", target__contains="someone").exists()


def test_api_keys_made_and_revoked_anywhere_are_recorded(admin_client: Client, admin_user: User) -> None:
    call_command("tako_apikey", "create", "nightly", "--user", "admin")
    key = ApiKey.objects.get(name="nightly")
    admin_client.post(
        "/admin/executions/apikey/", {"action": "revoke", "_selected_action": [key.pk]}
    )  # the admin's bulk action
    actions = list(AuditEvent.objects.order_by("at", "id").values_list("action", "actor"))
    assert actions == [("apikey.create", "manage.py tako_apikey"), ("apikey.revoke", "admin")]


def test_failed_logins_and_lockouts_are_recorded(settings) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    User.objects.create_user("analyst", password="a long enough password")
    for _ in range(2):
        Client(REMOTE_ADDR="10.1.2.3").post("/ui/login/", {"username": "analyst", "password": "wrong"})
    actions = list(AuditEvent.objects.order_by("at", "id").values_list("action", "actor", "client_ip"))
    assert sorted(actions) == [("login.failed", "analyst", "10.1.2.3")] * 2 + [
        ("login.locked_out", "analyst", "10.1.2.3")
    ]


def test_get_audit_filters_by_family_actor_and_time_and_needs_the_admin_scope(admin_user: User) -> None:
    services.audit_record("dlq.requeue", actor="alice", target="dlq:1")
    services.audit_record("dlq.delete", actor="bob", target="dlq:2")
    services.audit_record("environment.build", actor="alice", target="environment:default")
    old = services.audit_record("dlq.delete", actor="alice", target="dlq:0")
    AuditEvent.objects.filter(pk=old.pk).update(at=timezone.now() - timedelta(days=2))
    admin_key = ApiKey.issue(name="a", owner=admin_user, scope="admin")[1]
    client = Client(HTTP_X_API_KEY=admin_key)

    def targets(query: str) -> list[str]:
        response = client.get(f"/audit?{query}")
        assert response.status_code == 200, response.content
        return [item["target"] for item in response.json()["items"]]

    assert targets("action=dlq") == ["dlq:2", "dlq:1", "dlq:0"]
    assert targets("action=dlq.delete&actor=alice") == ["dlq:0"]
    since = (timezone.now() - timedelta(days=1)).isoformat()
    assert targets(f"actor=alice&since={since.replace('+', '%2B')}") == ["environment:default", "dlq:1"]
    assert targets("limit=1&offset=1") == ["dlq:2"]  # newest first, one page of one
    execute_key = ApiKey.issue(name="e", owner=admin_user, scope="execute")[1]
    assert Client(HTTP_X_API_KEY=execute_key).get("/audit").status_code == 403
    assert client.get("/audit?since=yesterday").status_code == 422


def test_the_audit_page_lists_and_filters_for_staff_only(admin_client: Client) -> None:
    services.audit_record("dlq.requeue", actor="alice", target="dlq:1")
    services.audit_record("login.failed", actor="mallory", target="user:mallory", client_ip="10.9.9.9")
    page = admin_client.get("/ui/audit/?action=login").content.decode()
    assert "mallory" in page and "10.9.9.9" in page and "dlq:1" not in page
    analyst = User.objects.create_user("analyst")
    client = Client()
    client.force_login(analyst)
    assert client.get("/ui/audit/").status_code == 403


def test_the_audit_log_is_kept_as_long_as_executions(settings) -> None:
    services.audit_record("dlq.delete", actor="alice", target="dlq:1")
    old = services.audit_record("dlq.delete", actor="alice", target="dlq:0")
    AuditEvent.objects.filter(pk=old.pk).update(at=timezone.now() - timedelta(days=31))
    services.executions_prune(older_than_days=30)
    assert list(AuditEvent.objects.values_list("target", flat=True)) == ["dlq:1"]
