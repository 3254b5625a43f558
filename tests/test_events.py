"""The server-sent events of a job, as events_since builds them from the stored row (unit tier)."""

from __future__ import annotations

import json
import threading

import pytest

from executions import services
from executions.api.events import Cursor, events_since
from executions.models import Environment, Execution
from tests.support import wait_for

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


MARKER = "\n[TRUNCATED: output exceeded 65536 bytes]"


def test_a_stream_past_the_cap_is_told_truncated_once_after_its_marker() -> None:
    execution = _execution(status="running", stdout="x" * 10 + MARKER, stdout_truncated=True)
    cursor = Cursor()
    events = [_parse(e) for e in events_since(execution, cursor)]
    n = 10 + len(MARKER)
    assert [(i, kind, data) for i, kind, data in events] == [
        ("0-0-running", "status", {"status": "running"}),
        (f"{n}-0-running", "stdout", "x" * 10 + MARKER),
        (f"{n}-0-running-t:stdout", "truncated", {"stream": "stdout"}),
    ]
    assert not events_since(execution, cursor)  # told once
    # A client that got the text but not the word gets the word alone; one that got both, nothing.
    resumed = [_parse(e) for e in events_since(execution, Cursor.parse(f"{n}-0-running"))]
    assert [(kind, data) for _, kind, data in resumed] == [("truncated", {"stream": "stdout"})]
    assert not events_since(execution, Cursor.parse(f"{n}-0-running-t:stdout"))
    execution.stderr, execution.stderr_truncated = "e" + MARKER, True
    execution.status, execution.exit_code = "succeeded", 0
    rest = [_parse(e) for e in events_since(execution, cursor)]
    assert [kind for _, kind, _ in rest] == ["stderr", "truncated", "status", "end"]
    assert rest[1][2] == {"stream": "stderr"} and rest[-1][0] == f"{n}-{1 + len(MARKER)}-end-t:stdout,stderr"
    assert Cursor.parse(rest[-1][0]).ended


def test_an_ended_record_that_was_truncated_is_told_so_before_its_end() -> None:
    """Whoever wrote the record (a sync run, a run whose monitor could not write), the stream says
    what the record says."""
    execution = _execution(status="succeeded", exit_code=0, stdout="y" + MARKER, stdout_truncated=True)
    events = [_parse(e) for e in events_since(execution, Cursor())]
    assert [kind for _, kind, _ in events] == ["stdout", "truncated", "status", "end"]


@pytest.mark.parametrize("value", ["1-2-running-t:", "1-2-running-t:stdin", "1-2-running-t:stderr,stdout", "1-2-t:x"])
def test_a_truncation_suffix_it_did_not_make_starts_from_the_beginning(value: str) -> None:
    assert str(Cursor.parse(value)) == "0-0-"


@pytest.mark.django_db(transaction=True)
def test_the_run_monitor_stores_the_marker_and_the_flag_while_the_job_still_runs() -> None:
    """What pages and streams read (live.py) says so at once, not only when the job ends."""
    from executions.sandbox.fake import FakeSandbox

    code = "import time\nprint('x' * 3000, flush=True)\ntime.sleep(3)"
    execution = _execution(is_async=True, code=code)
    runner = threading.Thread(
        target=services.execution_run,
        kwargs={"execution_id": execution.pk, "sandbox": FakeSandbox(output_cap_bytes=1024)},
    )
    runner.start()
    try:
        row = wait_for(
            lambda: Execution.objects.filter(pk=execution.pk, status="running", stdout_truncated=True).first(),
            timeout=10,
            what="the flag, while running",
        )
        assert row.stdout == "x" * 1024 + "\n[TRUNCATED: output exceeded 1024 bytes]"
    finally:
        runner.join(timeout=30)
    ended = Execution.objects.get(pk=execution.pk)
    assert (ended.status, ended.stdout, ended.stdout_truncated) == ("succeeded", row.stdout, True)
