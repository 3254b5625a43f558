"""Figures without code and display(), in real containers (cold and warm-pool paths): pandas
tables, matplotlib figures saved as artifacts, what fails to render recorded as text."""

from __future__ import annotations

from typing import Any

import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def api(api: Any, container_path: str, shipped_images: dict[str, str]) -> Any:
    from executions.models import Environment

    Environment.objects.filter(name="data-processing").update(pool_size=1)  # (the pool path: keeps a pool)
    return api


def run(api: Any, code: str, job_type: str = "data-processing", **fields: Any) -> dict[str, Any]:
    response = api.post("/execute", {"code": code, "job_type": job_type, **fields})
    assert response.status_code == 200, response.content
    return dict(response.json())


def artifacts_of(api: Any, execution_id: str) -> dict[str, dict[str, Any]]:
    record = api.get(f"/executions/{execution_id}?view=full").json()
    return {artifact["name"]: artifact for artifact in record["artifacts"]}


def test_display_works_in_every_environment(api: Any) -> None:
    body = run(api, "from tako import display\ndisplay({'n': 1})\ndisplay(print)\n", job_type="default")
    assert body["success"], body
    assert body["displays"] == [
        {"mime": "application/json", "data": {"n": 1}},
        {"mime": "text/plain", "data": "<built-in function print>"},
    ]


def test_dataframes_and_series_are_html_tables_of_50_rows(api: Any) -> None:
    code = (
        "import pandas as pd\n"
        "from tako import display\n"
        "df = pd.DataFrame({'n': range(80), 'label': ['<b>x</b>'] * 80})\n"
        "display(df)\n"
        "display(df['n'])\n"
    )
    body = run(api, code)
    assert body["success"], body
    table, series = body["displays"]
    assert table["mime"] == series["mime"] == "text/html"
    assert table["data"].startswith("<table") and table["data"].count("<tr") == 51  # header + 50 rows
    assert ">49<" in table["data"] and ">50<" not in table["data"]
    assert "&lt;b&gt;x&lt;/b&gt;" in table["data"]  # pandas escapes cell text
    assert series["data"].count("<tr") == 51


def test_figures_are_saved_without_code(api: Any) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3])\n"
        "plt.show()\n"  # saved and closed: figure-1
        "plt.figure(); plt.bar(['a', 'b'], [3, 4])\n"  # left open: figure-2 at the end
        "plt.figure(); plt.scatter([1], [2])\n"  # figure-3
        "print(plt.get_backend())\n"
    )
    body = run(api, code)
    assert body["success"], body
    assert body["stdout"] == "module://tako_matplotlib\n"
    artifacts = artifacts_of(api, body["execution_id"])
    assert sorted(artifacts) == ["figure-1.png", "figure-2.png", "figure-3.png"]
    for name, artifact in artifacts.items():
        assert artifact["content_type"] == "image/png"
        data = api.get(f"/jobs/{body['execution_id']}/artifacts/{name}")
        assert b"".join(data.streaming_content).startswith(PNG_MAGIC)
    assert body["displays"] == []  # figures are artifacts; displays are what display() was given


def test_a_displayed_figure_is_a_png_reference_saved_once(api: Any) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "from tako import display\n"
        "fig, ax = plt.subplots(); ax.plot([3, 1, 2])\n"
        "display(fig)\n"
        "display('after')\n"
    )
    body = run(api, code)
    assert body["displays"] == [
        {"mime": "image/png", "artifact": "figure-1.png"},
        {"mime": "application/json", "data": "after"},
    ]
    assert sorted(artifacts_of(api, body["execution_id"])) == ["figure-1.png"]  # not saved again at the end


def test_figures_of_a_program_that_chose_agg_or_failed_are_still_saved(api: Any) -> None:
    code = (
        "import matplotlib\n"
        "matplotlib.use('Agg')\n"
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2])\n"
        "raise ValueError('after plotting')\n"
    )
    body = run(api, code)
    assert (body["success"], body["error_type"]) == (False, "value_error")
    assert sorted(artifacts_of(api, body["execution_id"])) == ["figure-1.png"]


def test_a_figure_that_fails_to_save_is_text_and_the_result_is_unchanged(api: Any) -> None:
    code = (
        "import json\n"
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2]); plt.title(r'$\\frac{$')\n"  # bad mathtext: savefig raises
        "plt.figure(); plt.plot([2, 1])\n"
        "json.dump({'answer': 42}, open('/output/result.json', 'w'))\n"
    )
    body = run(api, code)
    assert (body["success"], body["output"], body["exit_code"]) == (True, {"answer": 42}, 0)
    (problem,) = body["displays"]
    assert problem["mime"] == "text/plain" and problem["data"].startswith("Figure figure-1.png could not be saved: ")
    assert sorted(artifacts_of(api, body["execution_id"])) == ["figure-2.png"]
