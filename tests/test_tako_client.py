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
