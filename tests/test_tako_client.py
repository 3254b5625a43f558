"""Tako VM's own Python client (PyPI `tako-vm`), unchanged, against this server under daphne."""

from __future__ import annotations

from dataclasses import dataclass

from tako_vm import TakoVM


@dataclass
class Numbers:
    a: int
    b: int


@dataclass
class Total:
    total: int


def add(numbers: Numbers) -> Total:
    return Total(total=numbers.a + numbers.b)


def divide(numbers: Numbers) -> Total:
    return Total(total=numbers.a // numbers.b)


def test_send_runs_a_typed_function(daphne_url: str) -> None:
    assert TakoVM(daphne_url).send(add, Numbers(a=2, b=40)) == Total(total=42)


def test_send_raw_reports_a_failure(daphne_url: str) -> None:
    result = TakoVM(daphne_url).send_raw(divide, Numbers(a=1, b=0))
    assert result.success is False
    assert result.error == "ZeroDivisionError: integer division or modulo by zero"
    assert result.exit_code == 1
    assert result.job_id  # our execution_id
    assert result.correlation_id


def test_the_clients_job_type_lookup_and_listing_work(daphne_url: str) -> None:
    client = TakoVM(daphne_url)
    assert client.get_job_type("default")["timeout"] == 30
    assert client.get_execution(client.send_raw(add, Numbers(a=1, b=1)).job_id)["status"] == "succeeded"
    assert client.list_executions()["count"] >= 1


def test_the_clients_async_lifecycle(daphne_url: str) -> None:
    client = TakoVM(daphne_url)
    code = "import json\nd = json.load(open('/input/data.json'))\nopen('/output/out.txt', 'w').write(str(d['n'] * 2))"
    job_id = client.submit_code(code, {"n": 21})
    result = client.get_result(job_id, timeout=60)
    assert result["status"] == "succeeded"
    assert client.download_artifact(job_id, "out.txt") == b"42"
    rerun_id = client.rerun(job_id)
    assert client.get_result(rerun_id, timeout=60)["status"] == "succeeded"
    fork_id = client.fork(job_id, "print('forked')")
    forked = client.get_result(fork_id, timeout=60, view="full")
    assert (forked["stdout"], forked["relationship"], forked["parent_execution_id"]) == ("forked\n", "fork", job_id)
    slow = client.submit_code("import time; time.sleep(60)")
    assert client.cancel(slow)["status"] == "cancelled"
    assert client.get_result(slow)["status"] == "cancelled"
