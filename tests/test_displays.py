"""display() and figures, as far as the unit tier can see them: the hook's module run by the fake
sandbox (no pandas or matplotlib on the host), the host's checks of what a program reports, and the
record. Containers, pandas and matplotlib: test_displays_sandbox.py."""

from __future__ import annotations

from typing import Any

import pytest

from executions.sandbox import Artifact, ContainerShape, RunSpec, wire
from executions.sandbox.docker.runner import displays_from
from executions.sandbox.fake import FakeSandbox

SHAPE = ContainerShape(image="tako-vm-default:latest", image_id="")


def run(code: str) -> Any:
    return FakeSandbox().run(RunSpec(execution_id="e1", shape=SHAPE, code=code, input_json="{}", timeout=10))


def test_display_records_json_and_text_in_order() -> None:
    result = run(
        "from tako import display\n"
        "display({'a': [1, 2.5, None]})\n"
        "display('plain words')\n"
        "display(object.__new__(type('Thing', (), {'__repr__': lambda self: '<Thing 7>'})))\n"
        "display(float('nan'))\n"
        "print('done')\n"
    )
    assert result.exit_code == 0, result.stderr
    assert result.displays == [
        {"mime": "application/json", "data": {"a": [1, 2.5, None]}},
        {"mime": "application/json", "data": "plain words"},
        {"mime": "text/plain", "data": "<Thing 7>"},
        {"mime": "text/plain", "data": "nan"},
    ]
    assert result.stdout == "done\n"


def test_what_cannot_be_rendered_is_text_and_the_run_goes_on() -> None:
    result = run(
        "from tako import display\n"
        "class Broken:\n"
        "    def __repr__(self):\n"
        "        raise RuntimeError('no repr')\n"
        "display(Broken())\n"
        "display({1, 2})\n"
        "import json; json.dump({'ok': True}, open('output/result.json', 'w'))\n"
    )
    assert result.exit_code == 0, result.stderr
    assert result.displays[0]["mime"] == "text/plain"
    assert "repr() failed: RuntimeError: no repr" in result.displays[0]["data"]
    assert result.displays[1] == {"mime": "text/plain", "data": "{1, 2}"}
    assert result.result_json == '{"ok": true}'


def test_a_run_that_fails_keeps_what_it_displayed() -> None:
    result = run("from tako import display\ndisplay([1])\n1 / 0\n")
    assert result.exit_code == 1
    assert result.displays == [{"mime": "application/json", "data": [1]}]


def test_the_host_trusts_nothing_the_program_reports() -> None:
    figure = Artifact(name="figure-1.png", data=b"\x89PNG")
    envelope = {
        "displays": [
            {"mime": "text/html", "data": "<table><script>alert(1)</script></table>"},
            {"mime": "image/png", "artifact": "figure-1.png"},
            {"mime": "image/png", "artifact": "../../etc/passwd"},
            {"mime": "text/html", "data": 5},
            {"mime": "application/x-evil", "data": "x"},
            "not an object",
            {"mime": "application/json", "data": {"k\x00": "v\x00"}},
        ]
    }
    assert displays_from(envelope, [figure]) == [
        {"mime": "text/html", "data": "<table><script>alert(1)</script></table>"},
        {"mime": "image/png", "artifact": "figure-1.png"},
        {"mime": "text/plain", "data": "Figure '../../etc/passwd' is not among the artifacts"},
        {"mime": "application/json", "data": {"k\ufffd": "v\ufffd"}},
    ]
    assert displays_from({"displays": "nope"}, []) == []
    many = {"displays": [{"mime": "text/plain", "data": str(i)} for i in range(wire.MAX_DISPLAYS + 5)]}
    assert len(displays_from(many, [])) == wire.MAX_DISPLAYS


def test_display_lines_are_read_as_the_wire_says() -> None:
    raw = b'{"mime": "text/plain", "data": "a"}\nnot json\n{"mime": "bogus"}\n[1]\n'
    raw += b'{"mime": "application/json", "data": 1}'
    assert wire.display_entries(raw) == [
        {"mime": "text/plain", "data": "a"},
        {"mime": "application/json", "data": 1},
    ]


@pytest.mark.django_db
def test_the_record_and_the_sync_response_carry_the_displays(api_nodocker: Any) -> None:
    from executions.models import Environment
    from executions.services import execution_create

    execution = execution_create(code="print(1)", input_data={}, environment=Environment.objects.get(name="default"))
    execution.displays = [{"mime": "application/json", "data": {"x": 1}}]
    execution.save(update_fields=["displays"])
    assert execution.to_sync_response()["displays"] == execution.displays
    full = api_nodocker.get(f"/executions/{execution.pk}?view=full").json()
    assert full["displays"] == execution.displays
    assert "displays" not in api_nodocker.get(f"/executions/{execution.pk}").json()
