"""The server-sent events of a job, as events_since builds them from the stored row (unit tier)."""

from __future__ import annotations

import json

import pytest

from executions import services
from executions.api.events import Cursor, events_since
from executions.models import Environment, Execution

pytestmark = pytest.mark.django_db


def _execution(**fields: object) -> Execution:
    environment = Environment.objects.get(name="default")
    execution = services.execution_create(code="print(1)", input_data={}, environment=environment)
    Execution.objects.filter(pk=execution.pk).update(**fields)
    return Execution.objects.get(pk=execution.pk)


def _parse(event: str) -> tuple[str, str, object]:
    fields = dict(line.split(": ", 1) for line in event.strip().splitlines())
    return fields["id"], fields["event"], json.loads(fields["data"])


def test_it_sends_only_what_follows_the_cursor_and_moves_it() -> None:
    execution = _execution(status="running", stdout="a\n", stderr="")
    cursor = Cursor()
    first = [_parse(e) for e in events_since(execution, cursor)]
    assert [(kind, data) for _, kind, data in first] == [("status", {"status": "running"}), ("stdout", "a\n")]
    assert first[-1][0] == "2-0-running" == str(cursor)
    execution.stdout, execution.stderr = "a\nb é\n", "warn\n"
    again = [_parse(e) for e in events_since(execution, cursor)]
    assert [(kind, data) for _, kind, data in again] == [("stdout", "b é\n"), ("stderr", "warn\n")]
    assert not events_since(execution, cursor)  # nothing new: nothing sent


def test_a_resumed_cursor_repeats_nothing_and_the_end_comes_last() -> None:
    execution = _execution(status="succeeded", stdout="one\ntwo\n", exit_code=0)
    cursor = Cursor.parse("4-0-running")
    events = [_parse(e) for e in events_since(execution, cursor)]
    assert [(kind, data) for _, kind, data in events[:2]] == [("stdout", "two\n"), ("status", {"status": "succeeded"})]
    assert events[-1][1:] == ("end", execution.to_dict()) and events[-1][0] == "8-0-end"
    assert Cursor.parse(events[-1][0]).ended


@pytest.mark.parametrize("value", [None, "", "garbage", "1-2", "-1-0-running", "1-2-running; drop"])
def test_a_last_event_id_it_did_not_make_starts_from_the_beginning(value: str | None) -> None:
    assert str(Cursor.parse(value)) == "0-0-"
