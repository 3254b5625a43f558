"""One run: a container made (or taken from the pool) for it, the job sent, the result collected.

/code and /input are host folders mounted read-only, written just before the job is sent; /output
and /tmp are size-capped tmpfs mounts that live in the container's memory cgroup. The job line goes
in, and the output comes out (no log file), through FIFOs in the run's host folder (/chan), or for
gVisor through the engine's attach, until the launcher's final report, or the timeout (then the
container is killed); the container is always removed, in the background and a moment after the
run, so neither the caller nor the job's answer waits for, or competes with, the engine's teardown.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, NamedTuple

import docker.errors
import requests.exceptions
from docker.types import LogConfig, Ulimit

from executions.sandbox import (
    Artifact,
    ContainerShape,
    ExceptionReport,
    RunResult,
    RunSpec,
    SandboxError,
    SandboxUnavailable,
    wire,
    without_nul,
)
from executions.sandbox.docker.client import EXECUTION_LABEL, WORKDIR_LABEL, Engine, translate_docker_errors
from executions.sandbox.docker.stream import (
    STDERR,
    STDOUT,
    Attachment,
    CappedStream,
    Channel,
    FifoChannel,
    StderrSplitter,
    StdoutSplitter,
    emitter,
    make_channel,
)
from executions.timings import timing_mark

logger = logging.getLogger(__name__)

# CPU weights (Docker's cpu_shares; 1024 is every other process group's): when the host's cores
# are all busy, a long job's container gets a quarter of a quick run's share.
QUICK_CPU_SHARES = 1024
LONG_CPU_SHARES = 256
SANDBOX_UID = 10001  # not 1000, which is often a real host user
CONTAINER_TMP = "/tmp"  # noqa: S108  (the container's own tmpfs, not the host's)
FSIZE_LIMIT = 10 * 1024 * 1024  # per file the program writes
FSIZE_LIMIT_WITH_PACKAGES = 1024 * 1024 * 1024  # the launcher raises it to unpack shared libraries
KILL_GRACE = 10
# A pooled container's interpreter is up: its code starts within milliseconds of the job line.
# Not started after this long, the engine is asked whether the container still runs.
POOLED_START_SECONDS = 0.5
STARTUP_LOOK_SECONDS = 1.0  # how often a starting container is looked at (FIFO channels only)

# A used container's removal and its replacement's start cost the engine hundreds of ms of CPU,
# which on a small host competes with the job's record and its answer (about 10-20 ms after the
# run, through another process for a queued job): they start this long after the run instead.
ENGINE_WORK_DELAY_SECONDS = 0.05

_BACKGROUND = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sandbox-engine")  # calls overlapped with others


class Taken(NamedTuple):
    """A ready pooled container a job took."""

    container_id: str
    run_dir: Path  # its host folder
    quick: bool  # it waited at quick work's CPU weight (False: at long jobs')
    # Tells the pool's keeper of the take once the job has run, when others were still ready: the
    # replacement's start (hundreds of ms of the engine's CPU) then does not compete with the job.
    # (The keeper's periodic look starts it anyway, if the job runs long.)
    after_run: Callable[[], None] | None = None


# Takes a ready pooled container of the job's shape for it (of its own CPU weight first), or None.
TakePooled = Callable[[RunSpec], Taken | None]


class _PooledContainerDead(Exception):
    """The pooled container taken had ended before its job could start: nothing of it ran."""


def run(engine: Engine, spec: RunSpec, take_pooled: TakePooled | None) -> RunResult:
    """Run `spec` in a pooled container (when `take_pooled` finds one) or in one created for it.
    A pooled container found dead once taken costs the job its warm start, never its run."""
    if take_pooled is not None:
        try:
            return _run(engine, spec, take_pooled)
        except _PooledContainerDead:
            logger.warning("Execution %s: its pooled container had ended; running it cold", spec.execution_id)
    return _run(engine, spec, None if take_pooled is None else lambda _: None)  # (wanted the pool: warm False)


def _run(engine: Engine, spec: RunSpec, take_pooled: TakePooled | None) -> RunResult:
    began = time.monotonic()
    container_id: str | None = None
    run_dir: Path | None = None
    reweighted: Future[Any] | None = None
    taken: Taken | None = None
    try:
        with translate_docker_errors("Starting the container"):
            taken = take_pooled(spec) if take_pooled is not None else None
            timing_mark("take")
            if taken is not None:
                container_id, run_dir = taken.container_id, taken.run_dir
                if taken.quick != spec.quick:  # (none of its own weight was ready) changed before
                    # the job line, while the files are written and the channel is opened (the
                    # engine's update writes the container's config to disk: tens of ms under load)
                    reweighted = _BACKGROUND.submit(_reweight, engine, container_id, cpu_shares_for(spec.quick))
                try:
                    write_job_files(run_dir, spec)
                except FileNotFoundError as exc:  # its folder went with it (removed as dead meanwhile)
                    raise _PooledContainerDead from exc
            else:
                # One folder per attempt: an earlier attempt's, removed a moment after it failed
                # (ENGINE_WORK_DELAY_SECONDS), is never the folder a retry of the job is writing.
                run_dir = make_run_dir(engine.config.work_dir / f"{spec.execution_id}.{secrets.token_hex(4)}")
                write_job_files(run_dir, spec)
                container_id = create(
                    engine,
                    spec.shape,
                    run_dir,
                    labels={EXECUTION_LABEL: spec.execution_id, WORKDIR_LABEL: str(run_dir)},
                    cpu_shares=cpu_shares_for(spec.quick),
                )
            nonce = secrets.token_hex(16)  # tells the launcher's messages from the program's output
            try:
                channel = _open_channel(engine, spec.shape, container_id, run_dir, pooled=taken is not None)
                if taken is None:
                    engine.api.start(container_id)
                if reweighted is not None:
                    wait([reweighted], timeout=engine.config.engine_timeout)  # (a failure is logged: its weight stays)
                channel.send(wire.job_line(nonce))  # the job may start
            except OSError as exc:  # the FIFOs of a pooled container removed meanwhile (its folder went)
                if taken is not None:
                    raise _PooledContainerDead from exc
                raise
            except docker.errors.APIError as exc:  # a pooled container's attach (gVisor) refused
                if taken is not None and _has_ended(engine, container_id):
                    raise _PooledContainerDead from exc
                raise
            timing_mark("send")
        if spec.on_container_start is not None:
            spec.on_container_start()
        result = _collect(engine, spec, container_id, channel, began, nonce, pooled=taken is not None)
        timing_mark("run")
        result.warm = (taken is not None) if take_pooled is not None else None
        return result
    finally:
        if container_id is not None or run_dir is not None:
            _after_the_answer(engine, container_id, run_dir, reweighted, taken)


def _after_the_answer(
    engine: Engine, container_id: str | None, run_dir: Path | None, reweighted: Future[Any] | None, taken: Taken | None
) -> None:
    """The container's removal and the keeper's call (the replacement's start) wait
    ENGINE_WORK_DELAY_SECONDS, then run in the background: the job's record and its answer go first."""

    def engine_work() -> None:
        if taken is not None and taken.after_run is not None:
            try:
                taken.after_run()
            except Exception:  # telling the keeper early is a nicety: its tick starts the replacement anyway
                logger.warning("Could not tell the pool's keeper of a take", exc_info=True)
        if reweighted is not None:  # (its weight's update, let finish first)
            wait([reweighted], timeout=engine.config.engine_timeout)
        remove_now(engine, container_id, run_dir)

    timer = threading.Timer(ENGINE_WORK_DELAY_SECONDS, engine_work)
    timer.name = "sandbox-after-run"
    # Not a daemon: a process stopping (SIGTERM) waits the moment for it rather than leave the
    # container behind (a process killed outright leaves it to the reaper, which finds it by label).
    timer.daemon = False
    timer.start()


def _has_ended(engine: Engine, container_id: str) -> bool:
    """Whether a container that a call just failed on has ended or gone (the call's fault, then),
    as the engine says; when the engine does not answer either, that is the fault (raised)."""
    try:
        with translate_docker_errors("Inspecting the container"):
            return not engine.api.inspect_container(container_id).get("State", {}).get("Running")
    except SandboxError as exc:
        if isinstance(exc.__cause__, docker.errors.NotFound):
            return True
        raise


def uses_fifos(shape: ContainerShape) -> bool:
    """Whether its containers talk through FIFOs in their host folder (runc), or through the
    engine's attach (gVisor opens no host FIFO)."""
    return shape.runtime != "runsc"


def _open_channel(engine: Engine, shape: ContainerShape, container_id: str, run_dir: Path, *, pooled: bool) -> Channel:
    """The container's job line and output, opened before it starts (no output lost)."""
    if not uses_fifos(shape):
        return Attachment(engine.api, container_id)
    channel = FifoChannel(run_dir / "chan")
    if pooled:
        channel.discard_waiting()
    return channel


def create(
    engine: Engine,
    shape: ContainerShape,
    run_dir: Path,
    *,
    labels: dict[str, str],
    name: str | None = None,
    cpu_shares: int = QUICK_CPU_SHARES,
) -> str:
    """Create (not start) a container of `shape` whose /code and /input are `run_dir`'s folders."""
    binds: dict[str, Any] = {
        str(run_dir / "code"): {"bind": "/code", "mode": "ro"},
        str(run_dir / "input"): {"bind": "/input", "mode": "ro"},
    }
    tmpfs = {
        CONTAINER_TMP: "rw,nosuid,nodev,size=64m,mode=1777",
        "/output": f"rw,nosuid,nodev,noexec,size=50m,uid={SANDBOX_UID},gid={SANDBOX_UID},mode=0755",
    }
    if uses_fifos(shape):
        binds[str(run_dir / "chan")] = {"bind": "/chan", "mode": "ro"}
    fsize_hard = FSIZE_LIMIT
    if shape.wheels_dir:  # packages for this run only: wheels read-only in, installed into /deps
        binds[shape.wheels_dir] = {"bind": "/wheels", "mode": "ro"}
        tmpfs["/deps"] = f"rw,nosuid,nodev,size={shape.memory_limit},uid={SANDBOX_UID},gid={SANDBOX_UID},mode=0755"
        fsize_hard = FSIZE_LIMIT_WITH_PACKAGES
    host_config = engine.api.create_host_config(
        binds=binds,
        init=True,  # docker-init as PID 1: a program that signals itself exits 128+N
        network_mode="bridge" if shape.network_enabled else "none",
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        mem_limit=shape.memory_limit,
        memswap_limit=shape.memory_limit,  # no swap beyond the limit
        nano_cpus=int(shape.cpu_limit * 1e9),
        cpu_shares=cpu_shares,
        runtime=shape.runtime,
        # Processes are bounded per container by its pids cgroup. Not by RLIMIT_NPROC: that counts
        # per uid across the host, and every container runs as SANDBOX_UID, so one job's fork
        # bomb would leave every other job unable to fork.
        pids_limit=128,
        ulimits=[
            Ulimit(name="nofile", soft=256, hard=256),
            Ulimit(name="fsize", soft=FSIZE_LIMIT, hard=fsize_hard),
            Ulimit(name="core", soft=0, hard=0),
        ],
        tmpfs=tmpfs,
        log_config=LogConfig(type="none"),  # output is read from the channel, never logged
    )
    created = engine.api.create_container(
        shape.image_id or shape.image,
        ["python3", "-I", "-S", "/opt/tako/launcher.py"],  # isolated, no site: starts faster
        user=f"{SANDBOX_UID}:{SANDBOX_UID}",
        working_dir=CONTAINER_TMP,
        environment={
            **dict(shape.environment),
            "HOME": CONTAINER_TMP,
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        labels={**engine.labels, **labels},
        stdin_open=not uses_fifos(shape),  # the job line arrives on stdin (else on /chan/job)
        detach=True,
        host_config=host_config,
        name=name,
    )
    return str(created["Id"])


def _collect(
    engine: Engine, spec: RunSpec, container_id: str, channel: Channel, began: float, nonce: str, *, pooled: bool
) -> RunResult:
    cap = engine.config.output_cap_bytes
    stdout, stderr = CappedStream(cap), CappedStream(cap)
    code_started_at: list[float] = []
    startup_over = threading.Event()  # the code started, or the container ended before it did

    def on_started() -> None:
        code_started_at.append(time.monotonic())
        startup_over.set()

    splitter = StdoutSplitter(nonce, stdout, on_started)
    stderr_splitter = StderrSplitter(nonce, stderr)
    emit = emitter(spec.on_output, spec.on_truncated)

    def read() -> None:
        try:
            for stream_id, data in channel.frames():
                if stream_id == STDOUT:
                    emit("stdout", splitter.feed(data), stdout)
                elif stream_id == STDERR:
                    emit("stderr", stderr_splitter.feed(data), stderr)
                if splitter.complete and stderr_splitter.ended:
                    break  # the launcher's last word: no need to wait for the engine's teardown
        except OSError:  # the socket closes under us when the container is killed
            pass
        finally:
            emit("stdout", splitter.finish(), stdout)
            emit("stderr", stderr_splitter.finish(), stderr)
            startup_over.set()

    reader = threading.Thread(target=read, name=f"sandbox-reader-{spec.execution_id}", daemon=True)
    reader.start()
    try:
        cancel = spec.cancel or threading.Event()
        if pooled and not startup_over.wait(POOLED_START_SECONDS) and not _is_running(engine, container_id):
            raise _PooledContainerDead  # (the attach stream of an ended container never ends: closed below)
        last_look = [time.monotonic()]

        def started_or_ended(timeout: float) -> bool:
            if startup_over.wait(timeout):
                return True
            # A FIFO's reader is told of no writer's end unless that writer had opened it: a launcher
            # that died before opening the channel is seen by asking the engine, once a second.
            if not channel.ends_with_container and time.monotonic() - last_look[0] >= STARTUP_LOOK_SECONDS:
                last_look[0] = time.monotonic()
                if not _is_running(engine, container_id):
                    channel.end()
            return False

        startup_timed_out = not _wait_unless_cancelled(
            started_or_ended, spec.startup_timeout - (time.monotonic() - began), cancel
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
            with translate_docker_errors("Stopping the container after its timeout"):
                engine.api.kill(container_id)
            reader.join(timeout=KILL_GRACE)
        execution_ms = int((time.monotonic() - code_began) * 1000) if code_started_at else 0
    finally:
        channel.close()  # (also when the engine failed meanwhile: the reader stops with it)
    if pooled and not code_started_at and not killed_by_us:  # its launcher never got the job
        raise _PooledContainerDead
    envelope = splitter.envelope if splitter.complete and stderr_splitter.ended else None
    parsed = wire.parse_envelope(bytes(envelope) if envelope is not None else None)
    exit_code = None if killed_by_us else _exit_code_from(parsed)
    artifacts = _artifacts_from(parsed)
    oom_killed = False
    if exit_code is None:  # no final report (killed, crashed, or it ended by SIGKILL): ask Docker
        with translate_docker_errors("Waiting for the container"):
            exit_code = engine.api.wait(container_id, timeout=KILL_GRACE).get("StatusCode")
            # Only a SIGKILL exit can be an OOM kill; ask Docker then (one inspect less otherwise).
            oom_killed = exit_code == 137 and not killed_by_us and _was_oom_killed(engine, container_id)
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
        artifacts=artifacts,
        displays=displays_from(parsed, artifacts),
        resource_usage=_resource_usage_from(parsed),
        startup_ms=int(((code_started_at[0] if code_started_at else time.monotonic()) - began) * 1000),
        dep_install_ms=_optional(parsed, "dep_install_ms", int),
        execution_ms=execution_ms,
        image_ref=_image_ref_of(engine, spec, container_id),
        runtime=spec.shape.runtime,
    )


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


def _image_ref_of(engine: Engine, spec: RunSpec, container_id: str) -> str:
    image_id = spec.shape.image_id or engine.api.inspect_container(container_id).get("Image", "")
    return f"{spec.shape.image.split(':')[0]}@{image_id}"


def _is_running(engine: Engine, container_id: str) -> bool:
    with translate_docker_errors("Inspecting the container"):
        return bool(engine.api.inspect_container(container_id).get("State", {}).get("Running"))


# The engine learns of an OOM kill from an event of its own, which can land just after the exit's
# (seen under gVisor): a SIGKILL exit the engine does not yet call one is asked about again a moment.
OOM_EVENT_GRACE = 0.5


def _was_oom_killed(engine: Engine, container_id: str) -> bool:
    deadline = time.monotonic() + OOM_EVENT_GRACE
    while True:
        if engine.api.inspect_container(container_id).get("State", {}).get("OOMKilled"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


# -- the envelope (wire.py) as a RunResult's fields: nothing in it is trusted ----------------------
def _optional(envelope: dict[str, Any], key: str, kind: type) -> Any:
    value = envelope.get(key)
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def _exit_code_from(envelope: dict[str, Any]) -> int | None:
    """The exit code the launcher reported, unless only Docker can tell (a SIGKILL may be an OOM kill)."""
    returncode = envelope.get("returncode")
    if not isinstance(returncode, int) or isinstance(returncode, bool):
        return None
    exit_code = returncode if returncode >= 0 else 128 - returncode
    return None if exit_code == 137 else exit_code


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


def displays_from(envelope: dict[str, Any], artifacts: list[Artifact]) -> list[dict[str, Any]]:
    """The display() records, each checked: a known mime with data of its kind, or a PNG that is
    one of the run's artifacts (else it says, as text, that the figure is missing)."""
    names = {artifact.name for artifact in artifacts}
    displays: list[dict[str, Any]] = []
    entries = envelope.get("displays")
    for entry in (entries if isinstance(entries, list) else [])[: wire.MAX_DISPLAYS]:
        if not isinstance(entry, dict):
            continue
        mime, data = entry.get("mime"), entry.get("data")
        if mime == "image/png":
            artifact = entry.get("artifact")
            if isinstance(artifact, str) and artifact in names:
                displays.append({"mime": mime, "artifact": artifact})
            else:
                displays.append(
                    {"mime": "text/plain", "data": f"Figure {str(artifact)[:200]!r} is not among the artifacts"}
                )
        elif mime in ("text/html", "text/plain") and isinstance(data, str):
            displays.append({"mime": mime, "data": data.replace("\x00", "\ufffd")})
        elif mime == "application/json" and "data" in entry:
            displays.append({"mime": mime, "data": without_nul(data)})
    return displays


def _resource_usage_from(envelope: dict[str, Any]) -> dict[str, Any]:
    usage = envelope.get("resource_usage")
    if not isinstance(usage, dict):
        return {}
    return {k: usage[k] for k in wire.RESOURCE_USAGE_KEYS if isinstance(usage.get(k), int | float)}


# -- the run's folder, and removal ------------------------------------------------------------------
def make_run_dir(run_dir: Path) -> Path:
    for sub in ("code", "input"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
        (run_dir / sub).chmod(0o755)
    run_dir.chmod(0o755)
    make_channel(run_dir / "chan")
    return run_dir


def write_job_files(run_dir: Path, spec: RunSpec) -> None:
    """main.py, data.json and the input files, readable by the sandbox's user (the mounts are read-only)."""
    for path, text in ((run_dir / "code" / "main.py", spec.code), (run_dir / "input" / "data.json", spec.input_json)):
        path.write_text(text, encoding="utf-8")
        path.chmod(0o644)
    write_input_files(run_dir / "input", spec.input_files)


def write_input_files(input_dir: Path, files: tuple[tuple[str, Path], ...]) -> None:
    """Copy each file to input_dir/<path> (paths were validated at admission; checked again here)."""
    root = input_dir.resolve()
    for relative, source in files:
        target = (input_dir / relative).resolve()
        if root not in target.parents:
            raise SandboxError(f"Input file path {relative!r} leaves /input")
        for folder in reversed(target.relative_to(root).parents[:-1]):
            (root / folder).mkdir(exist_ok=True)
            (root / folder).chmod(0o755)
        shutil.copyfile(source, target)
        target.chmod(0o644)


def cpu_shares_for(quick: bool) -> int:
    """The CPU weight of a container for quick work, or for a long job."""
    return QUICK_CPU_SHARES if quick else LONG_CPU_SHARES


def _reweight(engine: Engine, container_id: str, shares: int) -> None:
    """A pooled container to its job's CPU weight. Failing, the job goes on at the weight it waited
    with: a container that has ended meanwhile (404, 409, or 500 "marked for removal"), or an
    engine fault, which the run itself meets and reports."""
    try:
        engine.api.update_container(container_id, cpu_shares=shares)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        logger.info("Container %s kept the CPU weight it waited with: %s", container_id, exc)


def dispose(engine: Engine, container_id: str | None, run_dir: Path | None) -> None:
    """Remove a pooled container the pool gives up, and its folder, in the background: the engine's
    teardown takes tens of milliseconds that nobody needs to wait for. (A run's own container goes
    with _after_the_answer.)"""
    remover = threading.Thread(target=remove_now, args=(engine, container_id, run_dir), name="sandbox-remove")
    remover.daemon = True
    remover.start()


# The engine's forced removal can race the container's own exit: it sees the container running,
# its kill then finds it gone and the removal fails with a 500 (moby's "Could not kill running
# container ..., cannot remove - Container ... is not running"), leaving the container listed as
# "removing" with no removal under way. Asked again once the engine has handled the exit (its
# wait answers then), it removes it; asked before, the exit's handling could list it again after.
_REMOVAL_RETRIES = (0.05, 0.2, 1.0)
_EXIT_WAIT_SECONDS = 5


def _raced_its_exit(exc: docker.errors.APIError) -> bool:
    return exc.status_code == 500 and "is not running" in str(exc.explanation or "")


def remove_now(engine: Engine, container_id: str | None, run_dir: Path | None) -> None:
    try:
        if container_id is not None:
            for pause in (*_REMOVAL_RETRIES, None):
                try:
                    engine.api.remove_container(container_id, force=True)
                    break
                except docker.errors.APIError as exc:
                    if pause is None or not _raced_its_exit(exc):
                        raise
                    time.sleep(pause)
                    with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
                        engine.api.wait(container_id, timeout=_EXIT_WAIT_SECONDS)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: its removal is already under way (the reaper, a test's clean-up)
            logger.warning("Could not remove container %s", container_id, exc_info=True)
    except (docker.errors.DockerException, requests.exceptions.RequestException, SandboxUnavailable):
        # Left for the reaper (remove_stale_containers / containers_reap); its label finds it.
        logger.warning("Could not remove container %s", container_id, exc_info=True)
    finally:
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)
