"""The sandbox: runs one piece of untrusted Python in a fresh, locked-down container.

Everything that touches Docker lives in this package, behind `Sandbox`; the rest of the project
sees only `RunSpec` in and `RunResult` out. `get_sandbox()` returns the process-wide instance, and
is the one place here that reads settings: the sandbox is configured through its constructor.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from executions.sandbox.docker import DockerConfig, DockerSandbox


class SandboxUnavailable(Exception):
    """The container engine cannot be reached or is failing transiently (retrying may help)."""


class SandboxError(Exception):
    """The sandbox could not run the job for a reason that is not the user's code."""


@dataclass(frozen=True)
class ContainerShape:
    """Everything a container is created with before any job reaches it.

    A pooled container, started ahead of time, may run a job only if the job's shape is the
    same; `pool_key` names that shape on the engine (a label).
    """

    image: str
    image_id: str  # sha256:… of the image when the shape was made (a rebuild makes a new shape)
    memory_limit: str = "512m"
    cpu_limit: float = 1.0
    network_enabled: bool = False
    environment: tuple[tuple[str, str], ...] = ()
    wheels_dir: str | None = None  # host folder of wheels to install for this run only
    runtime: str = "runc"  # the OCI runtime the engine starts it with: runc, or runsc (gVisor)

    @property
    def pool_key(self) -> str:
        fields = [self.image_id, self.memory_limit, self.cpu_limit, self.network_enabled, self.environment]
        if self.runtime != "runc":  # (keeps the keys of runc pools as they were)
            fields.append(self.runtime)
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:20]

    def pool_key_for(self, quick: bool) -> str:
        """The key of its pooled containers waiting at quick work's CPU weight, or at long jobs'
        (a job takes one of its own weight first: changing a container's weight is an engine call)."""
        return self.pool_key if quick else self.pool_key + "-long"


@dataclass(frozen=True)
class PooledContainer:
    """A container of the warm pool, as the engine lists it."""

    name: str
    pool: str  # the environment it was started for
    pool_key: str  # its shape's key at the CPU weight it waits with (ContainerShape.pool_key_for)
    # "ready" (waiting for a job), "in_use" (running one), "dead" (ended unused), "starting" (made,
    # not running yet) or "claimed"
    # (being taken or removed: a moment, unless an engine fault interrupted it)
    state: str
    created: float  # unix time
    workdir: str  # its host folder (mounted at /code and /input)
    # In use by a job of the other CPU weight, none of its own having been ready: the key it wanted.
    wanted_key: str = ""


@dataclass(frozen=True)
class RunSpec:
    execution_id: str
    shape: ContainerShape  # the image and limits of its container
    code: str
    input_json: str  # input_data, already serialised
    timeout: int  # seconds of code run time, counted from when the code starts
    startup_timeout: float = 60  # seconds for container start and package install
    warm_pool: bool = False  # take a pooled container of the same shape if one is ready
    # Sync or quick work (False: a long job): a long job's container gets a quarter of the CPU
    # weight, so on a busy host the quick runs beside it are not slowed down by it.
    quick: bool = True
    # Called from a reader thread with ("stdout" | "stderr", text) as the program writes. What it is
    # given adds up to the result's text: past the output cap, the marker that text ends with.
    on_output: Callable[[str, str], None] | None = None
    # Called once with "stdout" or "stderr" when that stream passes the cap (after on_output's marker).
    on_truncated: Callable[[str], None] | None = None
    # Called once the container has started (before that, the run can safely be tried again).
    on_container_start: Callable[[], None] | None = None
    # Set from outside to stop the run; it then ends with `cancelled` true.
    cancel: threading.Event | None = None
    # (path under /input, host file to copy there): the request's files, written read-only beside data.json
    input_files: tuple[tuple[str, Path], ...] = ()


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
    # display() records, in order: {"mime", "data"} or {"mime": "image/png", "artifact": name}
    displays: list[dict[str, Any]] = field(default_factory=list)
    resource_usage: dict[str, Any] = field(default_factory=dict)
    startup_ms: int = 0
    dep_install_ms: int | None = None
    execution_ms: int = 0
    image_ref: str = ""  # name@sha256:… of the image the run used
    runtime: str = ""
    warm: bool | None = None  # ran in a pooled container (True), found none ready (False), not pooled


def without_nul(value: Any) -> Any:
    """The program's JSON with each NUL character shown as U+FFFD (PostgreSQL's JSON cannot hold it)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    return value


class Sandbox(Protocol):
    def run(self, spec: RunSpec) -> RunResult:
        """Run `spec.code` once in a container used for nothing else (a ready pooled one of the same
        shape when `spec.warm_pool`, else one created now), and always remove it afterwards (in the
        background: the result does not wait for the engine's teardown).

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

    def runtimes(self) -> list[str]:
        """The OCI runtimes the engine can start containers with (runc, runsc, …)."""
        ...

    def ping(self) -> bool:
        """Does the engine answer right now? Never raises; gives up after a short timeout (2 s)."""
        ...

    def pool_start(self, shape: ContainerShape, pool: str, *, quick: bool = True) -> None:
        """Create and start one pooled container of `shape`, waiting for a job of pool `pool`, at
        the CPU weight of quick work (else of long jobs)."""
        ...

    def pool_containers(self) -> list[PooledContainer]:
        """This deployment's pooled containers on the engine (ready, in use or dead)."""
        ...

    def pool_changes(self) -> Iterator[None]:
        """Yields whenever a ready pooled container ends, or is claimed through the engine; blocks
        in between."""
        ...

    def pool_takes(self, stop: threading.Event) -> Iterator[None]:
        """Yields whenever a job on this host tells of a take (at once when it emptied its pool,
        else once the job has run), until `stop` is set; blocks in between."""
        ...

    def pool_remove(self, containers: list[PooledContainer]) -> None:
        """Remove pooled containers (a job that took one meanwhile keeps it: only ready ones go)."""
        ...


def get_sandbox() -> Sandbox:
    """The process-wide sandbox, configured from settings.

    Settings are read on each call, as the sandbox used to read them on each use: tests change
    TAKO_DEPLOYMENT_ID, and the test database's name (part of the default deployment id) is only
    known once it exists. One sandbox is kept per configuration, so in a service it is one.
    """
    from django.conf import settings
    from django.db import connection

    from executions.sandbox.docker import DockerConfig

    config = DockerConfig(
        deployment_id=str(settings.TAKO_DEPLOYMENT_ID or _database_identity(connection.settings_dict)),
        work_dir=Path(settings.TAKO_WORK_DIR),
        output_cap_bytes=settings.TAKO_OUTPUT_CAP_BYTES,
        engine_timeout=settings.TAKO_DOCKER_TIMEOUT,
        image_base=settings.TAKO_IMAGE_BASE,
        debian_mirror=settings.TAKO_DEBIAN_MIRROR,
    )
    return _docker_sandbox(config)


def _database_identity(database: dict[str, Any]) -> str:
    """Without TAKO_DEPLOYMENT_ID, a deployment is named after the database all its processes share
    (so two deployments on one Docker engine never reap or clean up each other's containers)."""
    identity = f"{database['ENGINE']}|{database.get('HOST', '')}|{database.get('PORT', '')}|{database['NAME']}"
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


# A service process has one configuration, so one sandbox; tests change TAKO_DEPLOYMENT_ID for
# isolation, and every sandbox holds engine connections: the few latest are kept, older ones closed.
KEEP_SANDBOXES = 4
_sandboxes: OrderedDict[DockerConfig, DockerSandbox] = OrderedDict()
_sandboxes_lock = threading.Lock()


def _docker_sandbox(config: DockerConfig) -> Sandbox:
    from executions.sandbox.docker import DockerSandbox

    with _sandboxes_lock:
        sandbox = _sandboxes.get(config)
        if sandbox is not None:
            _sandboxes.move_to_end(config)
            return sandbox
        sandbox = _sandboxes[config] = DockerSandbox(config)
        while len(_sandboxes) > KEEP_SANDBOXES:
            _sandboxes.popitem(last=False)[1].close()
        return sandbox
