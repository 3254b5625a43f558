"""GET /jobs/{id}/events through a real daphne and a real worker cluster: lines arrive while the
job runs, a reconnect with Last-Event-ID resumes with nothing repeated or lost, an ended job gets
everything at once, and callers see only the jobs GET /jobs/{id} shows them."""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests
from django.contrib.auth.models import User
from django.db.models import F, Value
from django.db.models.functions import Concat

from executions import services
from executions.models import ApiKey, Environment, Execution
from tests.support import sse_events, submit, wait_for

SLOW = "import time\nprint('first', flush=True)\ntime.sleep(2)\nprint('second', flush=True)\ntime.sleep(1)\n"
SLOW += "print('third')"


def stream(url: str, job_id: str, **headers: str) -> requests.Response:
    response = requests.get(f"{url}/jobs/{job_id}/events", headers=headers, stream=True, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return response


def status_of(url: str, job_id: str) -> str:
    return str(requests.get(f"{url}/jobs/{job_id}", timeout=10).json()["status"])


def test_lines_arrive_while_the_job_runs_then_end_closes_the_stream(live_url: str) -> None:
    job_id = submit(live_url, SLOW)
    events, status_when_first = [], None
    with stream(live_url, job_id) as response:
        for event in sse_events(response):
            events.append(event)
            if event["event"] == "stdout" and status_when_first is None:
                status_when_first = status_of(live_url, job_id)
    assert status_when_first == "running"  # the first line came while the job still ran
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "end" and kinds.count("end") == 1
    statuses = [e["data"]["status"] for e in events if e["event"] == "status"]
    assert statuses[-2:] == ["running", "succeeded"]
    assert "".join(e["data"] for e in events if e["event"] == "stdout") == "first\nsecond\nthird\n"
    assert len([e for e in events if e["event"] == "stdout"]) >= 2  # live, not all at the end
    record = requests.get(f"{live_url}/executions/{job_id}", timeout=10).json()
    assert events[-1]["data"] == record
    assert len({e["id"] for e in events}) == len(events)  # every event has its own id


def test_a_reconnect_with_last_event_id_resumes_without_repeats_or_losses(live_url: str) -> None:
    code = "import sys, time\nfor i in range(6):\n    print(f'line {i}', flush=True)\n"
    code += "    print(f'err {i}', file=sys.stderr, flush=True)\n    time.sleep(0.4)"
    job_id = submit(live_url, code)
    first: list[dict[str, Any]] = []
    with stream(live_url, job_id) as response:
        for event in sse_events(response):
            first.append(event)
            if event["event"] == "stdout":
                break  # the client goes away mid-run
    assert status_of(live_url, job_id) == "running"
    rest = []
    with stream(live_url, job_id, **{"Last-Event-ID": first[-1]["id"]}) as response:
        rest = list(sse_events(response))
    events = first + rest
    out = "".join(e["data"] for e in events if e["event"] == "stdout")
    err = "".join(e["data"] for e in events if e["event"] == "stderr")
    assert out == "".join(f"line {i}\n" for i in range(6))
    assert err == "".join(f"err {i}\n" for i in range(6))
    statuses = [e["data"]["status"] for e in events if e["event"] == "status"]
    assert len(statuses) == len(set(statuses))  # no status sent twice
    assert rest[-1]["event"] == "end"
    # After `end`, a reconnect is told there is nothing more (an EventSource then stops).
    again = requests.get(f"{live_url}/jobs/{job_id}/events", headers={"Last-Event-ID": rest[-1]["id"]}, timeout=10)
    assert again.status_code == 204


def test_an_ended_job_gets_its_whole_output_and_end_at_once(live_url: str) -> None:
    job_id = submit(live_url, "import sys\nprint('out')\nprint('oops', file=sys.stderr)\nraise SystemExit(3)")
    wait_for(lambda: status_of(live_url, job_id) == "failed", what="the job's end")
    began = time.monotonic()
    with stream(live_url, job_id) as response:
        events = list(sse_events(response))
    assert time.monotonic() - began < 2
    assert [e["event"] for e in events] == ["stdout", "stderr", "status", "end"]
    assert (events[0]["data"], events[1]["data"], events[2]["data"]) == ("out\n", "oops\n", {"status": "failed"})
    assert events[3]["data"]["exit_code"] == 3


def test_output_past_the_cap_is_told_truncated_while_the_job_runs_as_the_record_says(live_url: str) -> None:
    code = "import sys, time\nsys.stdout.write('x' * 70000)\nsys.stdout.flush()\ntime.sleep(3)\nprint('dropped')"
    job_id = submit(live_url, code)
    events, status_when_told = [], None
    with stream(live_url, job_id) as response:
        for event in sse_events(response):
            events.append(event)
            if event["event"] == "truncated":
                status_when_told = status_of(live_url, job_id)
    assert status_when_told == "running"  # told at once, not when the job ended
    told = [e for e in events if e["event"] == "truncated"]
    assert [e["data"] for e in told] == [{"stream": "stdout"}]
    kinds = [e["event"] for e in events]
    assert kinds.index("truncated") < kinds.index("end")
    out = "".join(e["data"] for e in events if e["event"] == "stdout")
    record = requests.get(f"{live_url}/executions/{job_id}?view=full", timeout=10).json()
    assert out == record["stdout"] == "x" * 65536 + "\n[TRUNCATED: output exceeded 65536 bytes]"
    assert (record["stdout_truncated"], record["stderr_truncated"]) == (True, False)
    before = events[kinds.index("truncated") - 1]
    assert before["event"] == "stdout" and before["data"].endswith("[TRUNCATED: output exceeded 65536 bytes]")
    # A client that went away between the marker and the word gets the word, then the rest, once.
    with stream(live_url, job_id, **{"Last-Event-ID": before["id"]}) as response:
        rest = list(sse_events(response))
    assert [e["event"] for e in rest] == ["truncated", "status", "end"]
    assert rest[-1]["id"].endswith("-end-t:stdout")


def test_callers_see_only_their_own_jobs(live_url: str) -> None:
    alice = User.objects.create_user("alice-sse", password="pw-for-tests-only")
    bob = User.objects.create_user("bob-sse", password="pw-for-tests-only")
    _, alice_key = ApiKey.issue(name="alice", owner=alice)
    _, bob_key = ApiKey.issue(name="bob", owner=bob)
    response = requests.post(
        f"{live_url}/execute/async", json={"code": "print('mine')"}, headers={"X-API-Key": alice_key}, timeout=10
    )
    job_id = response.json()["job_id"]
    with stream(live_url, job_id, **{"X-API-Key": alice_key}) as own:
        assert [e["event"] for e in sse_events(own)][-1] == "end"
    other = requests.get(f"{live_url}/jobs/{job_id}/events", headers={"X-API-Key": bob_key}, timeout=10)
    assert (other.status_code, other.json()["detail"]) == (404, "Job not found")
    unknown = requests.get(f"{live_url}/jobs/{uuid.uuid4()}/events", headers={"X-API-Key": alice_key}, timeout=10)
    assert unknown.status_code == 404
    bad = requests.get(f"{live_url}/jobs/{job_id}/events", headers={"X-API-Key": "tako_not-a-key"}, timeout=10)
    assert (bad.status_code, bad.headers["Content-Type"]) == (401, "application/json")
    in_query = requests.get(f"{live_url}/jobs/{job_id}/events?api_key={alice_key}", timeout=10)
    assert in_query.status_code == 401


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def _p50(url: str, path: str, n: int = 60) -> float:
    session, took = requests.Session(), []
    for _ in range(n):
        began = time.perf_counter()
        assert session.get(f"{url}{path}", timeout=10).status_code == 200
        took.append(time.perf_counter() - began)
    return statistics.median(took)


def test_100_open_streams_hold_no_thread_each_and_other_requests_stay_quick(live_service: Any) -> None:
    """bench/sse_streams.py measures this in full; here, the same in brief, with limits that fail."""
    environment = Environment.objects.get(name="default")
    jobs = [services.execution_create(code="print(1)", input_data={}, environment=environment) for _ in range(100)]
    ids = [job.pk for job in jobs]
    Execution.objects.filter(pk__in=ids).update(status="running", worker="test:none")  # no worker touches them
    url, pid = live_service.url, live_service.server.process.pid
    path = f"/jobs/{ids[0]}"
    alone = _p50(url, path)
    threads_alone = _threads(pid)
    received = [0] * len(ids)
    stop = threading.Event()

    def read(index: int) -> None:
        with requests.get(f"{url}/jobs/{ids[index]}/events", stream=True, timeout=60) as response:
            for event in sse_events(response):
                received[index] += event["event"] == "stdout"
                if event["event"] == "end" or stop.is_set():
                    return

    readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(len(ids))]
    for thread in readers:
        thread.start()
    try:
        for _ in range(3):
            Execution.objects.filter(pk__in=ids).update(stdout=Concat(F("stdout"), Value("tick\n")))
            time.sleep(0.5)
        wait_for(lambda: min(received) >= 1, what="every stream's first line")
        with_streams = _p50(url, path)
        threads_with_streams = _threads(pid)
    finally:
        stop.set()
        Execution.objects.filter(pk__in=ids).update(status="cancelled", error_type="cancelled")
        for thread in readers:
            thread.join(timeout=10)
    print(f"\nGET {path} p50: {alone * 1000:.1f} ms alone, {with_streams * 1000:.1f} ms beside 100 streams; "
          f"daphne threads {threads_alone} -> {threads_with_streams}")  # fmt: skip
    assert threads_with_streams < threads_alone + 10
    assert with_streams < alone * 3 + 0.02
    assert not any(thread.is_alive() for thread in readers)  # every stream ended with its job
