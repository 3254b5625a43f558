"""The execution page's rich output: display() outputs in order, figures inline, program HTML only
inside a sandboxed frame (never the dashboard's markup), previews of CSV, JSON and images, the
input files, and every artifact as one zip. (The browser's view of it: test_browser.py.)"""

from __future__ import annotations

import html
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from executions.models import Environment, Execution
from executions.sandbox import Artifact, RunResult
from executions.sandbox.classify import Outcome
from executions.services import execution_create, lifecycle
from executions.services.input_files import input_files_store
from executions.services.job_requests import InputFile

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
EVIL = "<script>document.title='pwned'</script><img src=x onerror=alert(1)>"
CSV = "name,note\n" + "".join(f"row{i},<b>{i}</b>\n" for i in range(80))


@pytest.fixture(autouse=True)
def _own_data_dir(settings: Any, tmp_path: Path) -> None:
    settings.DATA_DIR = tmp_path / "data"


@pytest.fixture
def analyst(db: None) -> User:
    return User.objects.create_user("ana", password="pw-for-tests-only")


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def ended_with_outputs(user: User) -> Execution:
    execution = execution_create(
        code="print(1)", input_data={}, environment=Environment.objects.get(name="default"), submitted_by=user
    )
    input_files_store(execution, [InputFile("in/sales.csv", 4, "ab" * 32, b"a,b\n")])
    result = RunResult(
        exit_code=0,
        stdout=EVIL,
        artifacts=[
            Artifact("figure-1.png", PNG),
            Artifact("figure-2.png", PNG),
            Artifact("table.csv", CSV.encode()),
            Artifact("summary.json", b'{"total": 3, "note": "<i>x</i>"}'),
            Artifact("page.svg", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"),
        ],
        displays=[
            {"mime": "text/html", "data": f"<table><tr><td>{EVIL}</td></tr></table>"},
            {"mime": "image/png", "artifact": "figure-2.png"},
            {"mime": "application/json", "data": {"k": "<b>v</b>"}},
            {"mime": "text/plain", "data": EVIL},
        ],
    )
    lifecycle.end(execution, Outcome("succeeded"), result=result)
    return execution


def test_displays_are_shown_in_order_and_program_html_only_in_a_sandboxed_frame(analyst: User) -> None:
    execution = ended_with_outputs(analyst)
    page = client_for(analyst).get(f"/ui/executions/{execution.pk}/").content.decode()
    # The program's markup appears nowhere as markup: only escaped.
    assert "<script>document.title" not in page and "onerror=alert(1)>" not in page
    frames = re.findall(r"<iframe ([^>]*)>", page)
    assert len(frames) == 1
    (frame,) = frames
    assert re.search(r"\bsandbox(\s|$)", frame) and 'sandbox="' not in frame  # sandboxed, nothing allowed
    srcdoc = html.unescape(re.search(r'srcdoc="([^"]*)"', frame).group(1))
    assert f"<td>{EVIL}</td>" in srcdoc  # the table, as the program made it, inside the frame only
    order = [
        page.index(marker)
        for marker in (
            "<iframe",
            'src="/jobs/' + str(execution.pk) + '/artifacts/figure-2.png"',
            "&lt;b&gt;v&lt;/b&gt;",
            '<pre class="text">&lt;script&gt;document.title',
        )
    ]
    assert order == sorted(order)


def test_figures_not_displayed_are_shown_inline(analyst: User) -> None:
    execution = ended_with_outputs(analyst)
    page = client_for(analyst).get(f"/ui/executions/{execution.pk}/").content.decode()
    figures = page[page.index("<h2>Figures</h2>") :]
    assert f'<img src="/jobs/{execution.pk}/artifacts/figure-1.png"' in figures
    assert "figure-2.png" not in figures[: figures.index("</div>")]  # already shown where it was displayed


def test_artifacts_have_previews_escaped(analyst: User) -> None:
    execution = ended_with_outputs(analyst)
    page = client_for(analyst).get(f"/ui/executions/{execution.pk}/").content.decode()
    table = page[page.index('<table class="csv">') : page.index("</table>", page.index('<table class="csv">'))]
    assert table.count("<tr>") == 51  # the header and the first 50 rows
    assert "<th>name</th><th>note</th>" in table and "<td>&lt;b&gt;49&lt;/b&gt;</td>" in table
    assert "row50" not in table
    assert "&quot;total&quot;: 3" in page and "&lt;i&gt;x&lt;/i&gt;" in page  # the JSON, pretty and escaped
    assert f'<img src="/jobs/{execution.pk}/artifacts/figure-1.png" alt="figure-1.png" loading="lazy">' in page
    assert 'artifacts/page.svg" alt' not in page  # SVG can hold scripts: a download, never inline


def test_input_files_are_listed_with_download_links(analyst: User) -> None:
    execution = ended_with_outputs(analyst)
    page = client_for(analyst).get(f"/ui/executions/{execution.pk}/").content.decode()
    assert f'href="/executions/{execution.pk}/files/in/sales.csv" download><code>/input/in/sales.csv</code>' in page


def test_download_all_is_a_zip_of_every_artifact(analyst: User) -> None:
    execution = ended_with_outputs(analyst)
    client = client_for(analyst)
    page = client.get(f"/ui/executions/{execution.pk}/").content.decode()
    assert f'href="/ui/executions/{execution.pk}/artifacts.zip"' in page
    response = client.get(f"/ui/executions/{execution.pk}/artifacts.zip")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as zipped:
        assert sorted(zipped.namelist()) == ["figure-1.png", "figure-2.png", "page.svg", "summary.json", "table.csv"]
        assert zipped.read("table.csv") == CSV.encode()


def test_the_zip_follows_the_pages_visibility(analyst: User) -> None:
    execution = ended_with_outputs(analyst)
    other = User.objects.create_user("other", password="pw-for-tests-only")
    assert client_for(other).get(f"/ui/executions/{execution.pk}/artifacts.zip").status_code == 403
    assert Client().get(f"/ui/executions/{execution.pk}/artifacts.zip").status_code == 302  # to the login


def test_the_live_update_renders_the_same_result(analyst: User) -> None:
    """The websocket re-renders the result section when the run ends: with the same outputs."""
    from django.template.loader import render_to_string

    execution = ended_with_outputs(analyst)
    fragment = render_to_string("executions/detail.html#result", {"execution": execution})
    assert "<iframe sandbox srcdoc=" in fragment and "<script>document.title" not in fragment
