"""The Docker implementation of the sandbox. The only module that imports the docker SDK.

One run = one container, used once: either taken from the warm pool (created and started ahead
of time, waiting for a job) or created for the run. /code and /input are host directories mounted
read-only, written just before the job is sent; /output and /tmp are size-capped tmpfs mounts that
live in the container's memory cgroup. Output is read from the attach stream (no log file) until
the launcher's final report, or the timeout (then the container is killed); the container is
always removed, in the background, so the caller does not wait for the engine's teardown.

A pooled container is claimed by renaming it from tako-pool-<token> to tako-claimed-<token>: every
claimant asks for that same new name, and the engine renames under the container's lock, refusing
a rename to the name it already has, so exactly one claimant wins (a job, or the keeper draining
it). The name never changes again (a late claimant must keep failing). A job that won writes its
execution id into the container's host folder (OWNER_FILE), which tells the reaper whose it is.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import logging
import random
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from django.conf import settings
from docker.types import LogConfig, Ulimit
from docker.utils import kwargs_from_env
from docker.utils.socket import frames_iter

from executions.sandbox import (
    Artifact,
    ContainerShape,
    ExceptionReport,
    PooledContainer,
    RunResult,
    RunSpec,
    SandboxError,
    SandboxUnavailable,
    deployment_id,
)

logger = logging.getLogger(__name__)

MANAGED_LABEL = "tako.deployment"  # its value: deployment_id()
EXECUTION_LABEL = "tako.execution_id"  # containers created for one run
POOL_LABEL = "tako.pool"  # pooled containers: the environment they were started for
POOL_KEY_LABEL = "tako.pool_key"  # … and their ContainerShape.pool_key
WORKDIR_LABEL = "tako.workdir"  # … and the host folder mounted at /code and /input
POOL_NAME_PREFIX = "tako-pool-"  # a ready pooled container
CLAIMED_NAME_PREFIX = "tako-claimed-"  # claimed by a job or for removal; the token stays
OWNER_FILE = "execution"  # in a claimed container's host folder: the execution it runs
SANDBOX_UID = 10001  # not 1000: nproc limits count per uid, and 1000 is often a real host user
ENVELOPE_MARKER = b"\x1eTAKO-ENVELOPE "
STARTED_MARKER = b"\x1eTAKO-STARTED "
END_MARKER = b"\x1eTAKO-END "  # on stderr: the program's stderr is complete
FSIZE_LIMIT = 10 * 1024 * 1024  # per file the program writes
FSIZE_LIMIT_WITH_PACKAGES = 1024 * 1024 * 1024  # the launcher raises it to unpack shared libraries
MAX_ENVELOPE_BYTES = 80 * 1024 * 1024  # 50 MB of /output, base64-encoded, plus JSON
PING_TIMEOUT = 2  # seconds; /health never waits on it (see executions/health.py)
KILL_GRACE = 10


def managed_labels() -> dict[str, str]:
    return {MANAGED_LABEL: deployment_id()}


def managed_label_filter() -> str:
    """The label filter matching this deployment's containers, and no other deployment's."""
    return f"{MANAGED_LABEL}={deployment_id()}"


def _truncation_marker(cap: int) -> str:
    return f"\n[TRUNCATED: output exceeded {cap} bytes]"


class CappedStream:
    """Keeps the first `cap` bytes of a stream, counts the rest, decodes on a UTF-8 boundary."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> bytes:
        """Store what fits; return the bytes that were kept (for live streaming)."""
        self.total += len(data)
        room = self.cap - len(self.kept)
        kept = data[: max(room, 0)]
        self.kept += kept
        return kept

    @property
    def truncated(self) -> bool:
        return self.total > self.cap

    def text(self) -> str:
        data = _without_cut_character(bytes(self.kept)) if self.truncated else bytes(self.kept)
        text = data.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        return text + _truncation_marker(self.cap) if self.truncated else text


def _without_cut_character(data: bytes) -> bytes:
    """Drop a multi-byte UTF-8 character whose tail was cut off at the end of `data`."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # ASCII or a lead byte: the last character starts here
            needed = 1 if byte < 0x80 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if needed <= back else data[:-back]
    return data


class StdoutSplitter:
    """Separates the program's stdout from the launcher's messages around it.

    The stream is: STARTED marker (the code starts now), the program's output, ENVELOPE marker,
    the envelope. `on_started` is called once, when the code starts.
    """

    def __init__(self, nonce: str, user: CappedStream, on_started: Callable[[], None]) -> None:
        self.started_marker = STARTED_MARKER + nonce.encode() + b"\n"
        self.marker = ENVELOPE_MARKER + nonce.encode() + b"\n"
        self.user = user
        self.on_started: Callable[[], None] | None = on_started
        self.pending = b""
        self.envelope: bytearray | None = None
        self.envelope_overflow = False

    def feed(self, data: bytes) -> bytes:
        """Feed a chunk of the container's stdout; return the user-visible bytes kept."""
        if self.envelope is not None:
            self._feed_envelope(data)
            return b""
        buf = self.pending + data
        if self.on_started is not None:
            if len(buf) < len(self.started_marker) and self.started_marker.startswith(buf):
                self.pending = buf  # not all of the marker yet
                return b""
            if buf.startswith(self.started_marker):
                buf = buf[len(self.started_marker) :]
            self._started()
        index = buf.find(self.marker)
        if index >= 0:
            self.pending = b""
            self.envelope = bytearray()
            self._feed_envelope(buf[index + len(self.marker) :])
            return self.user.feed(buf[:index])
        held = _marker_prefix_length(buf, self.marker)  # may be the marker's start: wait for more
        self.pending = buf[len(buf) - held :] if held else b""
        return self.user.feed(buf[: len(buf) - held])

    def finish(self) -> bytes:
        if self.on_started is not None and self.pending and self.started_marker.startswith(self.pending):
            self.pending = b""  # the stream ended before the code started
        kept = self.user.feed(self.pending)
        self.pending = b""
        return kept

    def _started(self) -> None:
        callback, self.on_started = self.on_started, None
        if callback is not None:
            callback()

    @property
    def complete(self) -> bool:
        """The whole envelope has arrived (it is one JSON line)."""
        return self.envelope is not None and not self.envelope_overflow and self.envelope.endswith(b"\n")

    def _feed_envelope(self, data: bytes) -> None:
        assert self.envelope is not None
        if len(self.envelope) + len(data) > MAX_ENVELOPE_BYTES:
            self.envelope_overflow = True
            return
        self.envelope += data


class StderrSplitter:
    """Passes the program's stderr on until the launcher's END marker (then the stream is complete)."""

    def __init__(self, nonce: str, user: CappedStream) -> None:
        self.marker = END_MARKER + nonce.encode() + b"\n"
        self.user = user
        self.pending = b""
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        if self.ended:
            return b""
        buf = self.pending + data
        index = buf.find(self.marker)
        if index >= 0:
            self.ended, self.pending = True, b""
            return self.user.feed(buf[:index])
        held = _marker_prefix_length(buf, self.marker)
        self.pending = buf[len(buf) - held :] if held else b""
        return self.user.feed(buf[: len(buf) - held])

    def finish(self) -> bytes:
        kept = self.user.feed(self.pending)
        self.pending = b""
        return kept


def _marker_prefix_length(buf: bytes, marker: bytes) -> int:
    """Length of the longest tail of `buf` that is a proper prefix of `marker`."""
    index = buf.find(marker[:1], max(0, len(buf) - len(marker) + 1))
    while index != -1:
        if marker.startswith(buf[index:]):
            return len(buf) - index
        index = buf.find(marker[:1], index + 1)
    return 0


def _parse_envelope(raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        envelope = json.loads(raw)
    except ValueError:
        return {}
    return envelope if isinstance(envelope, dict) else {}


def _wait_unless_cancelled(wait: Callable[[float], bool], seconds: float, cancel: threading.Event) -> bool:
    """Call `wait(slice)` until it returns True (→ True), `seconds` pass or `cancel` is set (→ False)."""
    deadline = time.monotonic() + max(seconds, 0)
    while not cancel.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if wait(min(remaining, 0.1)):
            return True
    return False


def _optional(envelope: dict[str, Any], key: str, kind: type) -> Any:
    value = envelope.get(key)
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def _exception_from(envelope: dict[str, Any]) -> ExceptionReport | None:
    report = envelope.get("exception")
    if not isinstance(report, dict):
        return None
    mro, message = report.get("mro"), report.get("message")
    if not isinstance(mro, list) or not all(isinstance(n, str) for n in mro) or not isinstance(message, str):
        return None
    return ExceptionReport(class_names=tuple(mro), message=message)


def _artifacts_from(envelope: dict[str, Any]) -> list[Artifact]:
    artifacts = []
    for item in envelope.get("artifacts") or []:
        if not isinstance(item, dict):
            continue
        name, data = item.get("name"), item.get("data")
        if not isinstance(name, str) or not isinstance(data, str) or "/" in name or name in {".", ".."}:
            continue
        try:
            artifacts.append(Artifact(name=name, data=base64.b64decode(data, validate=True)))
        except (binascii.Error, ValueError):
            continue
    return artifacts


def _resource_usage_from(envelope: dict[str, Any]) -> dict[str, Any]:
    usage = envelope.get("resource_usage")
    if not isinstance(usage, dict):
        return {}
    keys = ("max_rss_mb", "cpu_time_ms", "wall_time_ms")
    return {k: usage[k] for k in keys if isinstance(usage.get(k), int | float)}


@contextmanager
def _translate_docker_errors(action: str) -> Iterator[None]:
    """Engine unreachable / 5xx → SandboxUnavailable (transient); anything else → SandboxError."""
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise SandboxError(f"{action}: image not found ({exc.explanation})") from exc
    except docker.errors.APIError as exc:
        if exc.is_server_error():
            raise SandboxUnavailable(f"{action}: Docker engine error: {exc.explanation}") from exc
        raise SandboxError(f"{action}: {exc.explanation}") from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise SandboxUnavailable(f"{action}: Docker engine unreachable") from exc
    except docker.errors.DockerException as exc:
        raise SandboxUnavailable(f"{action}: {exc}") from exc


class DockerSandbox:
    def __init__(self, client: docker.DockerClient | None = None) -> None:
        self._client = client
        self._ping_client: docker.APIClient | None = None
        self._runtime: str | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> docker.DockerClient:
        # Created on first use (and again after a failure), so the service starts without Docker.
        with self._lock:
            if self._client is None:
                with _translate_docker_errors("Connecting to Docker"):
                    self._client = docker.from_env(version="auto", timeout=settings.TAKO_DOCKER_TIMEOUT)
            return self._client

    @property
    def api(self) -> docker.APIClient:
        return self.client.api

    # -- the Sandbox interface ---------------------------------------------------------------
    def run(self, spec: RunSpec) -> RunResult:
        began = time.monotonic()
        container_id: str | None = None
        run_dir: Path | None = None
        try:
            with _translate_docker_errors("Starting the container"):
                pooled = spec.warm_pool and spec.shape.wheels_dir is None
                taken = self._take_pooled(spec) if pooled else None
                if taken is not None:
                    container_id, run_dir = taken
                    _write_job_files(run_dir, spec)
                else:
                    run_dir = _make_run_dir(Path(settings.TAKO_WORK_DIR) / spec.execution_id)
                    _write_job_files(run_dir, spec)
                    container_id = self._create(
                        spec.shape, run_dir, labels={EXECUTION_LABEL: spec.execution_id, WORKDIR_LABEL: str(run_dir)}
                    )
                params = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
                sock = self.api.attach_socket(container_id, params=params)  # before start: no output lost
                if taken is None:
                    self.api.start(container_id)
                nonce = secrets.token_hex(16)  # tells the launcher's messages from the program's output
                sock._sock.sendall(json.dumps({"nonce": nonce}).encode() + b"\n")  # the job may start
            if spec.on_container_start is not None:
                spec.on_container_start()
            result = self._collect(spec, container_id, sock, began, nonce)
            result.warm = (taken is not None) if pooled else None
            return result
        finally:
            if container_id is not None or run_dir is not None:
                self._dispose(container_id, run_dir)

    def image_ref(self, image: str) -> str | None:
        with _translate_docker_errors("Inspecting the image"):
            try:
                found = self.client.images.get(image)
            except docker.errors.ImageNotFound:
                return None
        return f"{image.split(':')[0]}@{found.id}"

    def remove_stale_containers(self) -> int:
        return self._remove_where(lambda summary: True)

    def stop(self, execution_id: str) -> int:
        return self._remove_where(lambda summary: container_execution(summary) == execution_id)

    def running_executions(self) -> set[str]:
        return {execution for summary in self._managed() if (execution := container_execution(summary))}

    def ping(self) -> bool:
        try:
            if self._ping_client is None:  # its own client: a short timeout, and never the lock
                self._ping_client = docker.APIClient(**kwargs_from_env(), version="auto", timeout=PING_TIMEOUT)
            return bool(self._ping_client.ping())
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
            return False

    # -- the warm pool -----------------------------------------------------------------------
    def pool_start(self, shape: ContainerShape, pool: str) -> None:
        run_dir = _make_run_dir(Path(settings.TAKO_WORK_DIR) / "pool" / secrets.token_hex(8))
        labels = {POOL_LABEL: pool, POOL_KEY_LABEL: shape.pool_key, WORKDIR_LABEL: str(run_dir)}
        container_id = None
        try:
            with _translate_docker_errors("Starting a pooled container"):
                container_id = self._create(shape, run_dir, labels=labels, name=POOL_NAME_PREFIX + run_dir.name)
                self.api.start(container_id)
        except BaseException:
            self._dispose(container_id, run_dir)
            raise

    def pool_containers(self) -> list[PooledContainer]:
        pooled = []
        for summary in self._managed():
            labels, name = summary.get("Labels") or {}, _name_of(summary)
            if POOL_LABEL not in labels:
                continue
            if name.startswith(POOL_NAME_PREFIX):
                state = "ready" if summary.get("State") == "running" else "dead"
            elif name.startswith(CLAIMED_NAME_PREFIX):
                # Taken by a job, or claimed for a moment (by a job, for removal), or left so by a fault.
                state = "in_use" if container_execution(summary) else "claimed"
            else:
                continue
            pooled.append(
                PooledContainer(
                    name=name,
                    pool=labels[POOL_LABEL],
                    pool_key=labels.get(POOL_KEY_LABEL, ""),
                    state=state,
                    created=float(summary.get("Created", 0)),
                    workdir=labels.get(WORKDIR_LABEL, ""),
                )
            )
        return pooled

    def pool_changes(self) -> Iterator[None]:
        filters = {
            "type": "container",
            "label": [managed_label_filter(), POOL_LABEL],
            "event": ["rename", "die", "destroy"],
        }
        with _translate_docker_errors("Watching the pool"):
            # Its own client: the stream holds a connection open (with no timeout: events waits).
            events = docker.APIClient(**kwargs_from_env(), version="auto")
            try:
                for _event in events.events(filters=filters, decode=True):
                    yield None
            finally:
                events.close()

    def pool_remove(self, containers: list[PooledContainer]) -> None:
        for container in containers:
            workdir = Path(container.workdir) if container.workdir else None
            if container.state == "claimed":  # left claimed by a fault: nobody else will use it
                self._remove_now(container.name, workdir)
            elif self._claim(container.name):  # else a job took it: it is theirs
                self._remove_now(CLAIMED_NAME_PREFIX + _token_of(container.name), workdir)

    def _take_pooled(self, spec: RunSpec) -> tuple[str, Path] | None:
        """Claim a ready pooled container of the job's shape and name it after the job, or None."""
        filters = {
            "label": [managed_label_filter(), f"{POOL_KEY_LABEL}={spec.shape.pool_key}"],
            "name": POOL_NAME_PREFIX,
            "status": "running",
        }
        candidates = self.api.containers(filters=filters)
        random.shuffle(candidates)  # concurrent takers rarely race for the same one
        for summary in candidates:
            name = _name_of(summary)
            if self._claim(name):
                workdir = Path(summary["Labels"][WORKDIR_LABEL])
                (workdir / OWNER_FILE).write_text(spec.execution_id)
                return str(summary["Id"]), workdir
        return None

    def _claim(self, pool_name: str) -> bool:
        """Rename a ready pooled container to its one claimed name; True for the one caller that did."""
        try:
            self.api.rename(pool_name, CLAIMED_NAME_PREFIX + _token_of(pool_name))
        except docker.errors.APIError as exc:
            if exc.is_server_error():
                raise
            return False  # gone (404), the name taken (409) or already its name (400): another won
        return True

    # -- one run -----------------------------------------------------------------------------
    def _create(self, shape: ContainerShape, run_dir: Path, *, labels: dict[str, str], name: str | None = None) -> str:
        binds: dict[str, Any] = {
            str(run_dir / "code"): {"bind": "/code", "mode": "ro"},
            str(run_dir / "input"): {"bind": "/input", "mode": "ro"},
        }
        tmpfs = {
            "/tmp": "rw,nosuid,nodev,size=64m,mode=1777",
            "/output": f"rw,nosuid,nodev,noexec,size=50m,uid={SANDBOX_UID},gid={SANDBOX_UID},mode=0755",
        }
        fsize_hard = FSIZE_LIMIT
        if shape.wheels_dir:  # packages for this run only: wheels read-only in, installed into /deps
            binds[shape.wheels_dir] = {"bind": "/wheels", "mode": "ro"}
            tmpfs["/deps"] = f"rw,nosuid,nodev,size={shape.memory_limit},uid={SANDBOX_UID},gid={SANDBOX_UID},mode=0755"
            fsize_hard = FSIZE_LIMIT_WITH_PACKAGES
        host_config = self.api.create_host_config(
            binds=binds,
            init=True,  # docker-init as PID 1: a program that signals itself exits 128+N
            network_mode="bridge" if shape.network_enabled else "none",
            read_only=True,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit=shape.memory_limit,
            memswap_limit=shape.memory_limit,  # no swap beyond the limit
            nano_cpus=int(shape.cpu_limit * 1e9),
            pids_limit=128,
            ulimits=[
                Ulimit(name="nofile", soft=256, hard=256),
                Ulimit(name="nproc", soft=128, hard=128),
                Ulimit(name="fsize", soft=FSIZE_LIMIT, hard=fsize_hard),
                Ulimit(name="core", soft=0, hard=0),
            ],
            tmpfs=tmpfs,
            log_config=LogConfig(type="none"),  # output is read from the attach stream, never logged
        )
        created = self.api.create_container(
            shape.image_id or shape.image,
            ["python3", "-I", "-S", "/opt/tako/launcher.py"],  # isolated, no site: starts faster
            user=f"{SANDBOX_UID}:{SANDBOX_UID}",
            working_dir="/tmp",
            environment={
                **dict(shape.environment),
                "HOME": "/tmp",
                "LANG": "C.UTF-8",
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
            },
            labels={**managed_labels(), **labels},
            stdin_open=True,  # the job line arrives on stdin
            detach=True,
            host_config=host_config,
            name=name,
        )
        return str(created["Id"])

    def _collect(self, spec: RunSpec, container_id: str, sock: Any, began: float, nonce: str) -> RunResult:
        cap = settings.TAKO_OUTPUT_CAP_BYTES
        stdout, stderr = CappedStream(cap), CappedStream(cap)
        code_started_at: list[float] = []
        startup_over = threading.Event()  # the code started, or the container ended before it did

        def on_started() -> None:
            code_started_at.append(time.monotonic())
            startup_over.set()

        splitter = StdoutSplitter(nonce, stdout, on_started)
        stderr_splitter = StderrSplitter(nonce, stderr)
        emit = _emitter(spec.on_output)

        def read() -> None:
            try:
                for stream_id, data in frames_iter(sock, tty=False):
                    if stream_id == 1:
                        emit("stdout", splitter.feed(data))
                    elif stream_id == 2:
                        emit("stderr", stderr_splitter.feed(data))
                    if splitter.complete and stderr_splitter.ended:
                        break  # the launcher's last word: no need to wait for the engine's teardown
            except OSError:  # the socket closes under us when the container is killed
                pass
            finally:
                emit("stdout", splitter.finish())
                emit("stderr", stderr_splitter.finish())
                startup_over.set()

        reader = threading.Thread(target=read, name=f"sandbox-reader-{spec.execution_id}", daemon=True)
        reader.start()
        cancel = spec.cancel or threading.Event()
        startup_timed_out = not _wait_unless_cancelled(
            startup_over.wait, spec.startup_timeout - (time.monotonic() - began), cancel
        )
        cancelled = cancel.is_set()
        code_began = code_started_at[0] if code_started_at else time.monotonic()
        timed_out = False
        if not startup_timed_out:

            def code_ended(timeout: float) -> bool:
                reader.join(timeout)
                return not reader.is_alive()

            timed_out = not _wait_unless_cancelled(code_ended, spec.timeout - (time.monotonic() - code_began), cancel)
            cancelled = cancel.is_set()
        startup_timed_out = startup_timed_out and not cancelled
        timed_out = timed_out and not cancelled
        killed_by_us = startup_timed_out or timed_out or cancelled
        if killed_by_us:
            with _translate_docker_errors("Stopping the container after its timeout"):
                self.api.kill(container_id)
            reader.join(timeout=KILL_GRACE)
        execution_ms = int((time.monotonic() - code_began) * 1000) if code_started_at else 0
        sock.close()
        envelope = splitter.envelope if splitter.complete and stderr_splitter.ended else None
        parsed = _parse_envelope(bytes(envelope) if envelope is not None else None)
        exit_code = None if killed_by_us else _exit_code_from(parsed)
        oom_killed = False
        if exit_code is None:  # no final report (killed, crashed, or it ended by SIGKILL): ask Docker
            with _translate_docker_errors("Waiting for the container"):
                exit_code = self.api.wait(container_id, timeout=KILL_GRACE).get("StatusCode")
                # Only a SIGKILL exit can be an OOM kill; ask Docker then (one inspect less otherwise).
                oom_killed = exit_code == 137 and not killed_by_us and self._was_oom_killed(container_id)
        return RunResult(
            exit_code=exit_code,
            stdout=stdout.text(),
            stderr=stderr.text(),
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            timed_out=timed_out,
            cancelled=cancelled,
            startup_timed_out=startup_timed_out,
            dependency_error=_optional(parsed, "dependency_error", str),
            oom_killed=oom_killed,
            exception=_exception_from(parsed),
            result_json=_optional(parsed, "result_json", str),
            artifacts=_artifacts_from(parsed),
            resource_usage=_resource_usage_from(parsed),
            startup_ms=int(((code_started_at[0] if code_started_at else time.monotonic()) - began) * 1000),
            dep_install_ms=_optional(parsed, "dep_install_ms", int),
            execution_ms=execution_ms,
            image_ref=self._image_ref_of(spec, container_id),
            runtime=self._default_runtime(),
        )

    def _image_ref_of(self, spec: RunSpec, container_id: str) -> str:
        image_id = spec.shape.image_id or self.api.inspect_container(container_id).get("Image", "")
        return f"{spec.shape.image.split(':')[0]}@{image_id}"

    def _default_runtime(self) -> str:
        # Runs never choose a runtime, so theirs is the engine's default; asked once per process.
        if self._runtime is None:
            with _translate_docker_errors("Asking the engine for its runtime"):
                self._runtime = str(self.api.info().get("DefaultRuntime", ""))
        return self._runtime

    def _was_oom_killed(self, container_id: str) -> bool:
        return bool(self.api.inspect_container(container_id).get("State", {}).get("OOMKilled"))

    # -- removal -----------------------------------------------------------------------------
    def _dispose(self, container_id: str | None, run_dir: Path | None) -> None:
        """Remove a used container and its folder in the background: the engine's teardown of a
        container takes tens of milliseconds that nobody needs to wait for."""
        threading.Thread(
            target=self._remove_now, args=(container_id, run_dir), name="sandbox-remove", daemon=True
        ).start()

    def _remove_now(self, container_id: str | None, run_dir: Path | None) -> None:
        try:
            if container_id is not None:
                self.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, requests.exceptions.RequestException, SandboxUnavailable):
            # Left for the reaper (remove_stale_containers / containers_reap); its label finds it.
            logger.warning("Could not remove container %s", container_id, exc_info=True)
        finally:
            if run_dir is not None:
                shutil.rmtree(run_dir, ignore_errors=True)

    def _managed(self) -> list[dict[str, Any]]:
        with _translate_docker_errors("Listing containers"):
            return list(self.api.containers(all=True, filters={"label": managed_label_filter()}))

    def _remove_where(self, wanted: Callable[[dict[str, Any]], bool]) -> int:
        found = [summary for summary in self._managed() if wanted(summary)]
        for summary in found:
            workdir = (summary.get("Labels") or {}).get(WORKDIR_LABEL)
            self._remove_now(str(summary["Id"]), Path(workdir) if workdir else None)
        return len(found)


def _name_of(summary: dict[str, Any]) -> str:
    names = summary.get("Names") or [""]
    return str(names[0]).lstrip("/")


def _token_of(name: str) -> str:
    return name.rsplit("-", 1)[1]


def container_execution(summary: dict[str, Any]) -> str:
    """The execution a container runs: its label, or the owner a pooled one got when it was taken."""
    labels = summary.get("Labels") or {}
    if labels.get(EXECUTION_LABEL):
        return str(labels[EXECUTION_LABEL])
    if _name_of(summary).startswith(CLAIMED_NAME_PREFIX) and labels.get(WORKDIR_LABEL):
        try:
            return (Path(labels[WORKDIR_LABEL]) / OWNER_FILE).read_text()
        except OSError:
            return ""
    return ""


def _exit_code_from(envelope: dict[str, Any]) -> int | None:
    """The exit code the launcher reported, unless only Docker can tell (a SIGKILL may be an OOM kill)."""
    returncode = envelope.get("returncode")
    if not isinstance(returncode, int) or isinstance(returncode, bool):
        return None
    exit_code = returncode if returncode >= 0 else 128 - returncode
    return None if exit_code == 137 else exit_code


def _make_run_dir(run_dir: Path) -> Path:
    for sub in ("code", "input"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
        (run_dir / sub).chmod(0o755)
    run_dir.chmod(0o755)
    return run_dir


def _write_job_files(run_dir: Path, spec: RunSpec) -> None:
    for path, text in ((run_dir / "code" / "main.py", spec.code), (run_dir / "input" / "data.json", spec.input_json)):
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)


def _emitter(on_output: Callable[[str, str], None] | None) -> Callable[[str, bytes], None]:
    """Decode each stream incrementally (a character may span two chunks) and pass it on."""
    decoders = {name: codecs.getincrementaldecoder("utf-8")(errors="replace") for name in ("stdout", "stderr")}

    def emit(stream: str, data: bytes) -> None:
        if on_output is None or not data:
            return
        text = decoders[stream].decode(data)
        if text:
            try:
                on_output(stream, text.replace("\x00", "\ufffd"))
            except Exception:
                logger.exception("Live output callback failed")

    return emit


class DockerImages:
    """The image-store half of the engine: what images.py needs to build job-type images."""

    def __init__(self, sandbox: DockerSandbox) -> None:
        self._sandbox = sandbox

    def labels(self, image: str) -> dict[str, str] | None:
        """The image's labels, or None when the image is not there."""
        with _translate_docker_errors("Inspecting the image"):
            try:
                found = self._sandbox.client.images.get(image)
            except docker.errors.ImageNotFound:
                return None
        return dict(found.labels or {})

    def image_id(self, image: str) -> str | None:
        with _translate_docker_errors("Inspecting the image"):
            try:
                return str(self._sandbox.client.images.get(image).id)
            except docker.errors.ImageNotFound:
                return None

    def remove_unused(self, image_id: str) -> None:
        """Remove an image that a rebuild replaced; kept if a container still uses it."""
        try:
            self._sandbox.client.images.remove(image_id, noprune=False)
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            logger.info("Kept replaced image %s: %s", image_id, exc)

    def size(self, image: str) -> int:
        with _translate_docker_errors("Inspecting the image"):
            return int(self._sandbox.client.images.get(image).attrs.get("Size", 0))

    def pull(self, image: str) -> bool:
        """Pull from a registry; False when none answers (as on machines with no registry)."""
        repository, _, tag = image.partition(":")
        try:
            self._sandbox.client.images.pull(repository, tag=tag or "latest")
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            logger.info("Could not pull %s: %s", image, exc)
            return False
        return True

    def import_rootfs(self, stream: Any, image: str) -> None:
        repository, _, tag = image.partition(":")
        with _translate_docker_errors("Importing the base image"):
            self._sandbox.client.api.import_image_from_stream(stream, repository=repository, tag=tag)

    def build(self, context: Path, image: str, *, build_args: dict[str, str], labels: dict[str, str]) -> None:
        with _translate_docker_errors(f"Building {image}"):
            try:
                self._sandbox.client.images.build(
                    path=str(context),
                    tag=image,
                    buildargs=build_args,
                    labels=labels,
                    rm=True,
                    forcerm=True,
                    network_mode="none",
                )
            except docker.errors.BuildError as exc:
                log = "".join(str(line.get("stream", line.get("error", ""))) for line in exc.build_log)
                raise SandboxError(f"Building {image} failed: {exc.msg}\n{log[-2000:]}") from exc
