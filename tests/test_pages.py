"""The browser pages through Django's test client: access, forms, actions, CSRF."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from executions import services, tasks
from executions.models import DeadLetter, Environment, Execution, PoolState, ProcessBeat
from executions.resilience import breaker_failure


@pytest.fixture
def analyst(db) -> User:
    return User.objects.create_user("ana", password="pw-for-tests-only")


@pytest.fixture
def admin_user(db) -> User:
    return User.objects.create_user("boss", password="pw-for-tests-only", is_staff=True, is_superuser=True)


def client_for(user: User, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def _token(html: str) -> str:
    return re.search(r'name="submit_token" value="([0-9a-f]+)"', html).group(1)


def _execution(user: User | None, **fields) -> Execution:
    environment = Environment.objects.get(name="default")
    execution = services.execution_create(code="print(1)", input_data={}, environment=environment, submitted_by=user)
    if fields:
        Execution.objects.filter(pk=execution.pk).update(**fields)
        execution.refresh_from_db()
    return execution


# -- access --------------------------------------------------------------------------------------
def test_pages_need_a_login(db) -> None:
    response = Client().get("/ui/new/")
    assert response.status_code == 302 and response["Location"].startswith("/ui/login/?next=/ui/new/")


def test_an_expired_session_on_an_htmx_request_goes_to_login_with_a_message(db) -> None:
    response = Client().get("/ui/executions/", HTTP_HX_REQUEST="true")
    assert response["HX-Redirect"] == "/ui/login/?expired=1"
    assert "Your session has expired" in Client().get("/ui/login/?expired=1").content.decode()


def test_the_root_opens_the_dashboard(db) -> None:
    assert Client().get("/")["Location"] == "/ui/executions/"


def test_analysts_cannot_open_the_operations_page(analyst) -> None:
    assert client_for(analyst).get("/ui/ops/").status_code == 403


def test_an_analyst_sees_only_their_own_executions(analyst, admin_user) -> None:
    mine, theirs = _execution(analyst), _execution(admin_user)
    page = client_for(analyst).get("/ui/executions/").content.decode()
    assert str(mine.pk)[:8] in page and str(theirs.pk)[:8] not in page
    assert client_for(analyst).get(f"/ui/executions/{theirs.pk}/").status_code == 403
    assert str(theirs.pk)[:8] in client_for(admin_user).get("/ui/executions/").content.decode()


def test_the_list_filters_by_status_environment_and_user(analyst, admin_user) -> None:
    failed = _execution(analyst, status="failed")
    ok = _execution(admin_user, status="succeeded")
    admin = client_for(admin_user)
    assert str(failed.pk)[:8] in admin.get("/ui/executions/?status=failed").content.decode()
    assert str(ok.pk)[:8] not in admin.get("/ui/executions/?status=failed").content.decode()
    assert str(ok.pk)[:8] not in admin.get("/ui/executions/?user=ana").content.decode()
    assert str(ok.pk)[:8] not in admin.get("/ui/executions/?job_type=data-processing").content.decode()
    rows = admin.get("/ui/executions/", HTTP_HX_REQUEST="true").content.decode()
    assert rows.lstrip().startswith('<div id="rows"')  # only the partial


def test_the_list_searches_code_and_dates_and_keeps_odd_user_names_in_its_links(admin_user, settings) -> None:
    odd = User.objects.create_user("a+b&c")  # + and & must survive the filter's query string
    old = _execution(odd, status="succeeded", code="import pandas  # quarterly report")
    Execution.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    recent = [_execution(odd, status="succeeded", code=f"print({n})  # quarterly report") for n in range(50)]
    other = _execution(admin_user, status="succeeded", code="print('unrelated')")
    admin = client_for(admin_user)
    found = admin.get("/ui/executions/", {"user": "a+b&c", "q": "quarterly"}).content.decode()
    assert str(recent[-1].pk)[:8] in found and str(other.pk)[:8] not in found
    assert "user=a%2Bb%26c&amp;q=quarterly&amp;page=2" in found  # the next page keeps the filters
    second = admin.get("/ui/executions/?user=a%2Bb%26c&q=quarterly&page=2").content.decode()
    assert str(old.pk)[:8] in second  # 51 matches, 50 a page: the oldest on page 2
    today = timezone.now().date()
    since = admin.get("/ui/executions/", {"q": "quarterly", "since": str(today - timedelta(days=1))}).content.decode()
    until = admin.get("/ui/executions/", {"q": "quarterly", "until": str(today - timedelta(days=2))}).content.decode()
    assert str(old.pk)[:8] not in since and str(recent[0].pk)[:8] in since
    assert str(old.pk)[:8] in until and str(recent[0].pk)[:8] not in until
    bad = admin.get("/ui/executions/", {"since": "last week"})
    assert bad.status_code == 200 and "A date such as 2026-11-29" in bad.content.decode()


def test_the_list_polls_only_while_something_can_still_change(analyst) -> None:
    done = _execution(analyst, status="succeeded")
    page = client_for(analyst).get("/ui/executions/").content.decode()
    assert str(done.pk)[:8] in page and 'hx-trigger="every 2s"' not in page
    _execution(analyst)  # queued
    assert 'hx-trigger="every 2s"' in client_for(analyst).get("/ui/executions/").content.decode()


def test_a_missing_execution_is_a_404_page(analyst) -> None:
    response = client_for(analyst).get("/ui/executions/00000000-0000-4000-8000-000000000000/")
    assert response.status_code == 404 and "Not found" in response.content.decode()


# -- the new execution form ------------------------------------------------------------------------
def test_the_form_shows_each_environments_packages_and_limits(analyst) -> None:
    html = client_for(analyst).get("/ui/new/").content.decode()
    assert 'data-info="pandas, numpy, matplotlib · 1g · 2.0 CPU · 60 s"' in html
    assert 'data-info="no extra packages · 512m · 1.0 CPU · 30 s"' in html


def test_the_form_shows_the_modules_preloaded_in_warm_containers_once_checked(analyst) -> None:
    environment = Environment.objects.get(name="data-processing")
    modules = ["numpy", "pandas"]
    check = {"image_id": "sha256:abc", "modules": modules, "errors": {}, "failure": "", "resident_bytes": 1}
    Environment.objects.filter(pk=environment.pk).update(preload=modules, preload_check={}, image_digest="sha256:abc")
    assert "preloaded in warm containers" not in client_for(analyst).get("/ui/new/").content.decode()  # unchecked
    Environment.objects.filter(pk=environment.pk).update(preload_check=check)
    html = client_for(analyst).get("/ui/new/").content.decode()
    assert " · 60 s · preloaded in warm containers: numpy, pandas" in html
    Environment.objects.filter(pk=environment.pk).update(preload_check={**check, "errors": {"pandas": "boom"}})
    html = client_for(analyst).get("/ui/new/").content.decode()
    assert "preload of numpy, pandas failed (see Operations): import them yourself" in html


def test_the_editor_loads_from_this_site_and_its_styles_only_with_the_pages_nonce(analyst) -> None:
    response = client_for(analyst).get("/ui/new/")
    html, policy = response.content.decode(), response["Content-Security-Policy"]
    nonce = re.search(r'<meta name="csp-nonce" content="([^"]+)">', html).group(1)
    style_src = re.search(r"style-src ([^;]+)", policy).group(1)
    assert style_src == f"'self' 'nonce-{nonce}'"  # no 'unsafe-inline'
    assert re.search(r"script-src 'self'(;|$)", policy)
    assert re.search(r'<script src="/static/vendor/codemirror/codemirror\.bundle[.\w]*\.js" defer>', html)
    assert "nonce-" not in client_for(analyst).get("/ui/executions/")["Content-Security-Policy"]  # only where asked


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"code": "print(1)", "input_data": "{not json"}, "Input is not valid JSON"),
        ({"code": "   ", "input_data": "{}"}, "Code cannot be empty"),
        ({"code": "print(1)", "input_data": "[1]"}, "input_data must be a JSON object"),
        ({"code": "print(1)", "input_data": "{}", "job_type": "nope"}, "Unknown job_type &#x27;nope&#x27;"),
        ({"code": "print(1)", "input_data": "{}", "timeout": "999"}, "Timeout must be between 1 and 300"),
    ],
)
def test_invalid_input_is_shown_in_the_form_and_nothing_runs(analyst, fields: dict, message: str) -> None:
    client = client_for(analyst)
    response = client.post("/ui/new/", {"job_type": "default", "submit_token": "t1", **fields}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200 and message in html
    assert 'id="run-form"' in html  # the form again, with what was typed
    assert Execution.objects.count() == 0


def test_running_queues_the_job_and_opens_its_page(analyst) -> None:
    client = client_for(analyst)
    token = _token(client.get("/ui/new/").content.decode())
    form = {"code": "print(1)", "job_type": "default", "input_data": '{"a": 1}', "timeout": "5", "submit_token": token}
    response = client.post("/ui/new/", form, HTTP_HX_REQUEST="true")
    execution = Execution.objects.get()
    assert response["HX-Redirect"] == f"/ui/executions/{execution.pk}/"
    assert (execution.submitted_by, execution.input_data, execution.timeout) == (analyst, {"a": 1}, 5)
    again = client.post("/ui/new/", form, HTTP_HX_REQUEST="true")  # a second click on Run
    assert again["HX-Redirect"] == response["HX-Redirect"] and Execution.objects.count() == 1


def test_forms_and_htmx_posts_need_the_csrf_token(analyst) -> None:
    client = client_for(analyst, enforce_csrf_checks=True)
    form = {"code": "print(1)", "job_type": "default", "input_data": "{}", "submit_token": "x"}
    assert client.post("/ui/new/", form).status_code == 403
    assert Execution.objects.count() == 0
    html = client.get("/ui/new/").content.decode()
    token = re.search(r'"X-CSRFToken": "([^"]+)"', html).group(1)
    assert client.post("/ui/new/", form, HTTP_X_CSRFTOKEN=token, HTTP_HX_REQUEST="true").status_code == 200


def test_fork_opens_the_form_with_the_code_and_input(analyst) -> None:
    parent = _execution(analyst)
    Execution.objects.filter(pk=parent.pk).update(input_data={"k": 2}, code="print('parent')")
    html = client_for(analyst).get(f"/ui/executions/{parent.pk}/fork/").content.decode()
    assert "print(&#x27;parent&#x27;)" in html and "&quot;k&quot;: 2" in html and "Fork of" in html


def test_the_page_of_a_failed_execution_explains_the_error(analyst) -> None:
    execution = _execution(
        analyst,
        status="failed",
        error_type="import_error",
        error_message="ModuleNotFoundError: No module named 'pandas'",
    )
    html = client_for(analyst).get(f"/ui/executions/{execution.pk}/").content.decode()
    assert "A module could not be imported." in html and "try `data-processing`" in html
    assert "ws-connect" not in html  # an ended execution needs no live stream


def test_cancel_and_rerun_from_the_page(analyst) -> None:
    execution = _execution(analyst)
    client = client_for(analyst)
    response = client.post(f"/ui/executions/{execution.pk}/cancel/")
    assert "showToast" in response["HX-Trigger"]
    assert Execution.objects.get(pk=execution.pk).status == "cancelled"
    rerun = client.post(f"/ui/executions/{execution.pk}/rerun/")
    child = Execution.objects.get(parent_execution=execution)
    assert rerun["HX-Redirect"] == f"/ui/executions/{child.pk}/" and child.submitted_by == analyst


# -- operations ------------------------------------------------------------------------------------
def _dead(user: User | None) -> DeadLetter:
    execution = _execution(user, status="failed", error_type="internal_error", error_message="engine broke")
    entry = services.dead_letter_add(execution)
    assert entry is not None
    return entry


def test_the_operations_page_shows_breaker_dlq_and_environments(admin_user) -> None:
    _dead(admin_user)
    html = client_for(admin_user).get("/ui/ops/").content.decode()
    assert 'id="breaker-state"' in html and "engine broke" in html and "ml-inference" in html
    panel = client_for(admin_user).get("/ui/ops/?panel=status", HTTP_HX_REQUEST="true").content.decode()
    assert 'id="status-panel"' in panel and 'id="dlq-panel"' not in panel


def test_the_operations_page_shows_the_hosts_budget_and_each_callers_use(admin_user, settings) -> None:
    settings.TAKO_MAX_WORKERS, settings.TAKO_HOST_MEMORY, settings.TAKO_QUICK_RESERVE = 8, 4 * 1024**3, 0.25
    default = Environment.objects.get(name="default")
    running = services.execution_create(code="1", input_data={}, environment=default, caller="key:7", is_async=True)
    Execution.objects.filter(pk=running.pk).update(status="running", worker=services.worker_name("worker"))
    for _ in range(2):
        services.execution_create(code="1", input_data={}, environment=default, caller="key:7", is_async=True)
    services.execution_create(code="1", input_data={}, environment=default, caller="ip:10.0.0.9", is_async=True)
    panel = client_for(admin_user).get("/ui/ops/?panel=status", HTTP_HX_REQUEST="true").content.decode()
    containers = re.search(r'id="budget-containers">(.*?)</tr>', panel, re.S)
    assert containers and re.findall(r"<td>(\d+)</td>", containers.group(1)) == ["1", "8", "6"]
    assert "512.0\xa0MB" in panel and "4.0\xa0GB" in panel  # the running job's memory limit, the budget
    callers = re.findall(
        r'<tr class="caller"><th scope="row">([^<]+)</th><td>(\d+)</td><td>(\d+)</td><td>(\d+)</td>', panel
    )
    assert callers == [("key:7", "1", "1", "2"), ("ip:10.0.0.9", "1", "0", "1")]


def test_the_operations_page_shows_each_warm_pool_live(admin_user) -> None:
    now = timezone.now()
    PoolState.objects.create(engine="host-a", environment="default", target=2, ready=1, in_use=1, starting=1,
                             hits=1, misses=0, updated_at=now)  # fmt: skip
    PoolState.objects.create(engine="host-b", environment="default", target=2, ready=2, in_use=0, starting=0,
                             hits=0, misses=1, updated_at=now)  # fmt: skip
    # A keeper killed a minute ago left its row: it counts for nothing.
    PoolState.objects.create(engine="host-c", environment="default", target=2, ready=2, in_use=0, starting=0,
                             hits=5, misses=5, updated_at=now)  # fmt: skip
    for engine, beat_at in (("host-a", now), ("host-b", now), ("host-c", now - timedelta(seconds=60))):
        ProcessBeat.objects.create(host=engine, role="pool", pid=1, engine=engine, started_at=now, beat_at=beat_at)
    panel = client_for(admin_user).get("/ui/ops/?panel=status", HTTP_HX_REQUEST="true").content.decode()
    row = re.search(r'<tr id="pool-default">(.*?)</tr>', panel, re.S)
    assert row, panel
    cells = re.findall(r"<td[^>]*>(\d+)</td>", row.group(1))
    assert cells == ["3", "4", "1", "1", "1", "1"]  # ready, target, starting, in use, hits, misses over both hosts


def test_the_operations_page_shows_each_engines_breaker(admin_user) -> None:
    from executions.resilience import breaker_failure, engine_seen

    engine_seen("worker-b-engine")
    breaker_failure("socket gone", name="worker-b-engine")
    panel = client_for(admin_user).get("/ui/ops/?panel=status", HTTP_HX_REQUEST="true").content.decode()
    table = re.search(r'<table id="engines".*?</table>', panel, re.S)
    assert table and "worker-b-engine" in table.group(0) and "socket gone" in table.group(0)


def test_requeue_and_delete_dlq_entries_with_a_toast(admin_user) -> None:
    first, second, third = _dead(admin_user), _dead(admin_user), _dead(admin_user)
    client = client_for(admin_user)
    response = client.post("/ui/ops/dlq/requeue/", {"ids": [first.pk, second.pk]})
    assert "Requeued 2 entries" in response["HX-Trigger"]
    first.refresh_from_db()
    assert first.requeued_by == "boss" and first.requeued_execution is not None
    response = client.post("/ui/ops/dlq/delete/", {"ids": [third.pk]})
    assert "Deleted 1 entry" in response["HX-Trigger"] and not DeadLetter.objects.filter(pk=third.pk).exists()
    again = client.post("/ui/ops/dlq/requeue/", {"ids": [first.pk]})
    assert "already requeued" in again["HX-Trigger"]
    entry = client.get(f"/ui/ops/dlq/{second.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert "engine broke" in entry and "print(1)" in entry


def test_requeue_is_refused_while_the_breaker_is_open(admin_user) -> None:
    entry = _dead(admin_user)
    for _ in range(5):
        breaker_failure("down")
    response = client_for(admin_user).post("/ui/ops/dlq/requeue/", {"ids": [entry.pk]})
    assert "circuit breaker is open" in response["HX-Trigger"]
    entry.refresh_from_db()
    assert entry.requeued_at is None


def test_the_admin_account_is_created_once_with_its_password_shown(db, capsys, monkeypatch) -> None:
    monkeypatch.setenv("TAKO_ADMIN_PASSWORD", "chosen-password-1")
    call_command("tako_admin")
    assert "user admin, password chosen-password-1" in capsys.readouterr().out
    call_command("tako_admin")
    assert "An admin account exists" in capsys.readouterr().out
    assert User.objects.get(username="admin").check_password("chosen-password-1")


@pytest.mark.django_db(transaction=True)
def test_the_build_button_queues_a_build_and_the_panel_polls_until_it_ends(
    default_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The build's task is kept here (a live service's cluster on this database would take it and
    # build a second time, after the one below), and run as its worker would.
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr("executions.services.environments.async_task", lambda *args, **kwargs: queued.append(args))
    admin = User.objects.create_user("builder", password="pw-for-tests-only", is_staff=True)
    client = client_for(admin)
    response = client.post("/ui/ops/environments/default/build/", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "Building the image of default" in response["HX-Trigger"]
    assert "queued…" in html and 'hx-trigger="every 1s"' in html  # the panel polls while it is pending
    again = client.post("/ui/ops/environments/default/build/", HTTP_HX_REQUEST="true")
    assert "A build of 'default' is already" in again["HX-Trigger"]  # queued, or running if a worker took it
    assert queued == [("executions.tasks.build_environment", "default", None)]
    tasks.build_environment(*queued[0][1:])  # as the worker that takes it runs it
    assert Environment.objects.get(name="default").build_status == "built"
    panel = client.get("/ui/ops/?panel=environments", HTTP_HX_REQUEST="true").content.decode()
    assert "ready" in panel and "every 1s" not in panel
