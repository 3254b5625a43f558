"""Helpers shared by test modules (no test module imports another)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def submit(url: str, code: str, **fields: Any) -> str:
    response = requests.post(f"{url}/execute/async", json={"code": code, **fields}, timeout=10)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    return str(response.json()["job_id"])


def containers_of(job_id: str) -> list[dict[str, Any]]:
    """The containers running a job: created for it (labelled), or taken from the warm pool."""
    import docker

    from executions.sandbox.docker import container_execution, managed_label_filter

    found = docker.from_env(version="auto").api.containers(all=True, filters={"label": managed_label_filter()})
    return [summary for summary in found if container_execution(summary) == job_id]


# -- processes, found by what they run and an entry of their environment ------------------------
def pids_of(pattern: str) -> set[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False).stdout
    return {int(pid) for pid in found.split()}


def environ_has(pid: int, entry: str) -> bool:
    try:
        return entry.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def pids_with(pattern: str, entry: str) -> set[int]:
    """The processes running `pattern` whose environment holds `entry` (NAME=value)."""
    return {pid for pid in pids_of(pattern) if environ_has(pid, entry)}


def parent_of(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for a parent (here, PID 1) to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
