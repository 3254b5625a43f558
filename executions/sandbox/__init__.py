"""The sandbox: runs one piece of untrusted Python in a fresh, locked-down container.

Everything that touches Docker lives in this package, behind `Sandbox`; the rest of the project
sees only `RunSpec` in and `RunResult` out. `get_sandbox()` returns the process-wide instance.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol


class SandboxUnavailable(Exception):
    """The container engine cannot be reached or is failing transiently (retrying may help)."""


class SandboxError(Exception):
    """The sandbox could not run the job for a reason that is not the user's code."""


@dataclass(frozen=True)
class RunSpec:
    execution_id: str
    image: str
    code: str
    input_json: str  # input_data, already serialised
    timeout: int  # seconds of code run time, counted from when the code starts
    startup_timeout: float = 60  # seconds for container start and package install
    memory_limit: str = "512m"
    cpu_limit: float = 1.0
    network_enabled: bool = False
    environment: dict[str, str] = field(default_factory=dict)
    wheels_dir: str | None = None  # host folder of wheels to install for this run only
    # Called from a reader thread with ("stdout" | "stderr", text) as the program writes.
    on_output: Callable[[str, str], None] | None = None
    # Called once the container has started (before that, the run can safely be tried again).
    on_container_start: Callable[[], None] | None = None
    # Set from outside to stop the run; it then ends with `cancelled` true.
    cancel: threading.Event | None = None


@dataclass(frozen=True)
class ExceptionReport:
    """The exception that ended the program, as recorded inside the container."""

    class_names: tuple[str, ...]  # qualified names of its class and bases, most specific first
    message: str  # the last line of the traceback, e.g. "ZeroDivisionError: division by zero"


@dataclass(frozen=True)
class Artifact:
    name: str
    data: bytes


@dataclass
class RunResult:
    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False
    cancelled: bool = False
    startup_timed_out: bool = False
    dependency_error: str | None = None  # the run's own packages could not be installed
    oom_killed: bool = False
    exception: ExceptionReport | None = None
    result_json: str | None = None  # the raw text of /output/result.json, if the program wrote one
    artifacts: list[Artifact] = field(default_factory=list)
    resource_usage: dict[str, Any] = field(default_factory=dict)
    startup_ms: int = 0
    dep_install_ms: int | None = None
    execution_ms: int = 0
    image_ref: str = ""  # name@sha256:… of the image the run used
    runtime: str = ""


class Sandbox(Protocol):
    def run(self, spec: RunSpec) -> RunResult:
        """Run `spec.code` once in a new container and always remove the container afterwards.

        Returns a RunResult whatever the code did (crash, timeout, OOM, garbage output).
        Raises SandboxUnavailable when the engine cannot be reached or fails transiently, and
        SandboxError for any other fault of the service (a missing image, say).
        """
        ...

    def image_ref(self, image: str) -> str | None:
        """`name@sha256:…` of a local image, or None when it is not there."""
        ...

    def remove_stale_containers(self) -> int:
        """Remove every container this service started (after a crash); returns how many."""
        ...

    def stop(self, execution_id: str) -> int:
        """Kill and remove the containers of one execution (its worker is gone); returns how many."""
        ...

    def running_executions(self) -> set[str]:
        """Execution ids of the containers this service has on the engine."""
        ...

    def ping(self) -> bool:
        """Does the engine answer right now? Never raises; gives up after TAKO_PING_TIMEOUT."""
        ...


def deployment_id() -> str:
    """Names this deployment's containers, so that two deployments sharing one Docker engine never
    reap or clean up each other's. TAKO_DEPLOYMENT_ID, else derived from the database that every
    process of one deployment shares."""
    from django.conf import settings
    from django.db import connection

    if settings.TAKO_DEPLOYMENT_ID:
        return str(settings.TAKO_DEPLOYMENT_ID)
    database = connection.settings_dict
    identity = f"{database['ENGINE']}|{database.get('HOST', '')}|{database.get('PORT', '')}|{database['NAME']}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


@cache
def get_sandbox() -> Sandbox:
    from executions.sandbox.docker import DockerSandbox

    return DockerSandbox()
