"""The pages' forms (admission's rules, shown beside their fields) and who sees which executions."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils.datastructures import MultiValueDict

from executions import services
from executions.models import Environment, Execution
from executions.selectors import executions_visible_to
from executions.views.forms import ExecutionForm

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.django_db


@pytest.fixture
def analyst() -> User:
    return User.objects.create_user("ana", password="pw-for-tests-only")


@pytest.fixture
def admin_user() -> User:
    return User.objects.create_user("boss", password="pw-for-tests-only", is_staff=True)


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _execution(user: User | None) -> Execution:
    environment = Environment.objects.get(name="default")
    return services.execution_create(code="print(1)", input_data={}, environment=environment, submitted_by=user)


def _form(**fields: str) -> dict[str, str]:
    typed = {"code": "print(1)", "job_type": "default", "input_data": "{}", "timeout": "", "submit_token": "t1"}
    return {**typed, **fields}


# -- the form --------------------------------------------------------------------------------------
def test_a_valid_form_carries_the_request_admission_validated() -> None:
    form = ExecutionForm(_form(input_data='{"a": 1}', timeout="7"))
    assert form.is_valid(), form.errors
    request = form.cleaned_data["request"]
    assert (request.code, request.environment.name, request.input_data, request.timeout) == (
        "print(1)",
        "default",
        {"a": 1},
        7,
    )


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"input_data": "{not json"}, "input_data", "Input is not valid JSON"),
        ({"input_data": "[1]"}, "input_data", "input_data must be a JSON object"),
        ({"timeout": "soon"}, "timeout", "Timeout must be a whole number of seconds"),
        ({"timeout": "0"}, "timeout", "Timeout must be between 1 and 300 seconds"),
        ({"code": ""}, "code", "Code cannot be empty"),
        ({"job_type": "no such"}, "job_type", "job_type must be a name of letters"),
    ],
)
def test_each_broken_rule_is_an_error_of_its_field(fields: dict[str, str], field: str, message: str) -> None:
    form = ExecutionForm(_form(**fields))
    assert not form.is_valid()
    assert message in form.errors[field][0]


def _uploads(*files: tuple[str, bytes]) -> MultiValueDict:
    return MultiValueDict({"input_files": [SimpleUploadedFile(name, content) for name, content in files]})


def test_packages_and_a_startup_timeout_reach_the_request() -> None:
    form = ExecutionForm(_form(requirements="numpy>=1.26,<2\n\n  pandas  \n", startup_timeout="120"))
    assert form.is_valid(), form.errors
    request = form.cleaned_data["request"]
    assert (request.requirements, request.startup_timeout) == (["numpy>=1.26,<2", "pandas"], 120)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"startup_timeout": "soon"}, "startup_timeout", "Startup timeout must be a whole number of seconds"),
        ({"startup_timeout": "9"}, "startup_timeout", "startup_timeout must be between 10 and 600 seconds"),
        ({"startup_timeout": "601"}, "startup_timeout", "startup_timeout must be between 10 and 600 seconds"),
        ({"requirements": "numpy\nhttps://example.invalid/x.whl"}, "requirements", "Invalid requirement 'https://"),
        ({"requirements": "--index-url=x"}, "requirements", "Invalid requirement '--index-url=x'"),
        ({"requirements": "\n".join(f"pkg{n}" for n in range(51))}, "requirements", "At most 50 requirements"),
    ],
)
def test_bad_packages_or_startup_timeouts_are_errors_of_their_field(
    fields: dict[str, str], field: str, message: str
) -> None:
    form = ExecutionForm(_form(**fields))
    assert not form.is_valid()
    assert message in form.errors[field][0]
    assert set(form.errors) == {field}


def test_packages_are_refused_where_the_deployment_turns_them_off(analyst: User, settings: Any) -> None:
    settings.TAKO_ALLOW_REQUIREMENTS = False
    form = ExecutionForm(_form(requirements="numpy"))
    assert not form.is_valid()
    assert form.errors["requirements"] == ["Per-run requirements are turned off on this deployment"]
    assert 'id="requirements"' not in _client(analyst).get("/ui/new/").content.decode()  # nor offered


def test_input_files_reach_the_request_by_name_even_empty_ones() -> None:
    form = ExecutionForm(_form(), _uploads(("sales.csv", b"a,b\n1,2\n"), ("empty.txt", b"")))
    assert form.is_valid(), form.errors
    files = form.cleaned_data["request"].files
    assert [(f.path, f.size_bytes, f.data) for f in files] == [("empty.txt", 0, b""), ("sales.csv", 8, b"a,b\n1,2\n")]


@pytest.mark.parametrize(
    ("limits", "files", "message"),
    [
        (
            {"TAKO_MAX_INPUT_FILE_BYTES": 4},
            [("big.csv", b"12345")],
            "File 'big.csv': it is 5 bytes, over the limit of 4",
        ),
        ({"TAKO_MAX_INPUT_FILES": 1}, [("a.txt", b"a"), ("b.txt", b"b")], "At most 1 files are allowed (2 sent)"),
        (
            {"TAKO_MAX_INPUT_FILES_BYTES": 3},
            [("a.txt", b"ab"), ("b.txt", b"cd")],
            "Files total 4 bytes, over the limit",
        ),
        ({}, [("data.json", b"{}")], "File 'data.json': /input/data.json holds input_data"),
        ({}, [("a.txt", b"1"), ("a.txt", b"2")], "File 'a.txt': chosen twice"),
    ],
)
def test_input_files_over_a_limit_are_refused_beside_their_field(
    settings: Any, limits: dict[str, int], files: list[tuple[str, bytes]], message: str
) -> None:
    for name, value in limits.items():
        setattr(settings, name, value)
    form = ExecutionForm(_form(), _uploads(*files))
    assert not form.is_valid()
    assert message in " ".join(form.errors["input_files"])


def test_every_broken_rule_is_named_at_once() -> None:
    form = ExecutionForm(_form(code="  ", input_data="{not json", timeout="999"))
    assert not form.is_valid()
    assert set(form.errors) == {"code", "input_data", "timeout"}


# -- the page --------------------------------------------------------------------------------------
@pytest.mark.parametrize("htmx", [True, False])
def test_form_errors_render_beside_their_fields_with_what_was_typed(analyst: User, htmx: bool) -> None:
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    response = _client(analyst).post("/ui/new/", _form(code="print('kept')", timeout="soon"), **headers)
    html = response.content.decode()
    assert response.status_code == 200
    assert '<p id="timeout-error" class="field-error" role="alert">Timeout must be a whole number' in html
    assert "print(&#x27;kept&#x27;)</textarea>" in html and 'value="soon"' in html
    assert ("<h1>" in html) is not htmx  # the form alone to htmx, else the whole page
    assert Execution.objects.count() == 0


def test_the_quota_refusal_shows_above_the_form(analyst: User, settings: Any) -> None:
    settings.TAKO_MAX_JOBS_IN_PROGRESS = 1
    _execution(analyst)  # queued: the one job in progress this analyst may have
    response = _client(analyst).post("/ui/new/", _form(), HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert '<p class="notice error" role="alert">Too many jobs in progress (1)' in html
    assert 'id="run-form"' in html and Execution.objects.count() == 1


def test_the_fork_page_starts_from_the_parents_job(analyst: User) -> None:
    parent = _execution(analyst)
    Execution.objects.filter(pk=parent.pk).update(
        timeout=12, input_data={"k": 2}, startup_timeout=90, requirements=["numpy>=1.26", "pandas"]
    )
    html = _client(analyst).get(f"/ui/executions/{parent.pk}/fork/").content.decode()
    assert 'value="12"' in html and "&quot;k&quot;: 2" in html and "Fork of" in html
    assert 'value="90"' in html and "numpy&gt;=1.26\npandas</textarea>" in html


def test_a_form_with_files_runs_without_javascript_and_a_fork_keeps_them(analyst: User) -> None:
    client = _client(analyst)
    sent = {**_form(submit_token="files-1"), "input_files": [SimpleUploadedFile("notes.txt", b"hello")]}
    response = client.post("/ui/new/", sent)  # a plain multipart post, as the browser sends it without htmx
    parent = Execution.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/ui/executions/{parent.pk}/"
    assert [(f.path, f.size_bytes) for f in parent.input_files.all()] == [("notes.txt", 5)]

    assert "notes.txt (5\xa0bytes)" in client.get(f"/ui/executions/{parent.pk}/fork/").content.decode()
    client.post(f"/ui/executions/{parent.pk}/fork/", _form(submit_token="fork-1"), HTTP_HX_REQUEST="true")
    kept = Execution.objects.get(parent_execution=parent)
    assert [(f.path, f.sha256) for f in kept.input_files.all()] == [("notes.txt", parent.input_files.get().sha256)]
    replaced = {**_form(submit_token="fork-2"), "input_files": [SimpleUploadedFile("other.txt", b"x")]}
    client.post(f"/ui/executions/{parent.pk}/fork/", replaced, HTTP_HX_REQUEST="true")
    newest = Execution.objects.filter(parent_execution=parent).exclude(pk=kept.pk).get()
    assert [f.path for f in newest.input_files.all()] == ["other.txt"]


def test_a_refused_file_is_named_beside_the_field_and_nothing_runs(analyst: User, settings: Any) -> None:
    settings.TAKO_MAX_INPUT_FILE_BYTES = 4
    sent = {**_form(), "input_files": [SimpleUploadedFile("big.csv", b"12345")], "startup_timeout": "5"}
    html = _client(analyst).post("/ui/new/", sent, HTTP_HX_REQUEST="true").content.decode()
    assert '<p id="input_files-error" class="field-error" role="alert">File &#x27;big.csv&#x27;: it is 5 bytes' in html
    assert '<p id="startup_timeout-error" class="field-error" role="alert">startup_timeout must be between' in html
    assert Execution.objects.count() == 0


# -- who sees what ---------------------------------------------------------------------------------
def test_admins_see_every_execution_and_analysts_their_own(analyst: User, admin_user: User) -> None:
    mine, theirs, anonymous = _execution(analyst), _execution(admin_user), _execution(None)
    assert set(executions_visible_to(analyst)) == {mine}
    assert set(executions_visible_to(admin_user)) == {mine, theirs, anonymous}
    assert set(executions_visible_to(AnonymousUser())) == set()
    assert set(executions_visible_to(None, sees_all=True)) == {mine, theirs, anonymous}  # an admin API key
    assert set(executions_visible_to(admin_user, sees_all=False)) == {theirs}  # a staff member's execute key


def test_the_pages_keep_to_the_rule(analyst: User, admin_user: User) -> None:
    theirs = _execution(admin_user)
    assert _client(analyst).get(f"/ui/executions/{theirs.pk}/").status_code == 403
    assert _client(analyst).post(f"/ui/executions/{theirs.pk}/cancel/").status_code == 403
    assert _client(analyst).get(f"/ui/executions/{theirs.pk}/fork/").status_code == 403
    assert _client(admin_user).get(f"/ui/executions/{_execution(analyst).pk}/").status_code == 200


def test_pages_do_not_import_the_api() -> None:
    found = []
    for path in sorted((ROOT / "executions" / "views").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            if isinstance(node, ast.ImportFrom) and node.module == "executions":
                names = [f"executions.{alias.name}" for alias in node.names]
            found += [f"{path.relative_to(ROOT)}: {name}" for name in names if name.startswith("executions.api")]
    assert found == []
