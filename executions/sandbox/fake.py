"""An in-process sandbox for the fast unit tier: no engine, no containers, no isolation.

`FakeSandbox` satisfies the Sandbox protocol. A run returns the scripted result for its code when
there is one (a table: code → RunResult, or an exception to raise), and otherwise really runs the
code with `python3 -I` in a subprocess, in a temporary folder, under the run's timeout. How it
ended is reported as the Docker sandbox reports it: exit code 128+N after a fatal signal, 137 when
the timeout or a cancel killed it, the exception that ended it (recorded by the containers' own
hook, bootstrap/hook/sitecustomize.py), capped stdout and stderr, live output, result.json and the
other output files as artifacts.

It is not a sandbox: the code runs as this user on this machine, so give it only tests' code. The
program's working folder holds input/data.json and output/ (relative paths: /input and /output do
not exist here). A run's own packages (`shape.wheels_dir`) are not installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from executions.sandbox import (
    Artifact,
    ContainerShape,
    ExceptionReport,
    PooledContainer,
    RunResult,
    RunSpec,
    SandboxUnavailable,
    wire,
)
from executions.sandbox.docker.runner import displays_from, write_input_files
from executions.sandbox.docker.stream import CappedStream, Emit, emitter

HOOK_DIR = Path(__file__).resolve().parent / "bootstrap" / "hook"
RESULT_FILE = "result.json"
# Loads the containers' hook, then runs main.py as __main__ from its own folder (the hook's folder,
# with `tako`, stays on the path after it, as PYTHONPATH has it in the containers).
PRELUDE = (
    "import os, sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "import sitecustomize\n"
    "main = sys.argv[2]\n"
    "sys.path.insert(0, os.path.dirname(main))\n"
    "sys.argv = [main]\n"
    "with open(main, encoding='utf-8') as source:\n"
    "    code = compile(source.read(), main, 'exec')\n"
    "exec(code, {'__name__': '__main__', '__file__': main, '__builtins__': __builtins__})\n"
)
KILLED_EXIT_CODE = 137  # what the engine reports for a container the sandbox killed


class FakeSandbox:
    def __init__(
        self,
        *,
        scripted: Mapping[str, RunResult | BaseException] | None = None,
        python: str = sys.executable,
        output_cap_bytes: int = 65536,
        images: set[str] | None = None,
    ) -> None:
        self.scripted = dict(scripted or {})
        self.python = python
        self.output_cap_bytes = output_cap_bytes
        self.images = images  # the images that exist; None: every image does
        self.available = True  # False: the engine is "down" (ping False, the rest raises)
        self.runs: list[RunSpec] = []  # every spec run, in order
        self._running: dict[str, subprocess.Popen[bytes]] = {}
        self._pool: list[PooledContainer] = []
        self._changed = threading.Condition()
        self._changes = 0

    # -- runs --------------------------------------------------------------------------------
    def run(self, spec: RunSpec) -> RunResult:
        self._check_available()
        self.runs.append(spec)
        pooled = spec.warm_pool and spec.shape.wheels_dir is None
        warm = self._take_pooled(spec) if pooled else None
        scripted = self.scripted.get(spec.code)
        if isinstance(scripted, BaseException):
            raise scripted
        if scripted is not None:
            result = dataclasses.replace(scripted, warm=warm)
            if spec.on_container_start is not None:
                spec.on_container_start()
            emit = emitter(spec.on_output)
            emit("stdout", result.stdout.encode())
            emit("stderr", result.stderr.encode())
            for stream in ("stdout", "stderr"):  # (a scripted text holds its marker already)
                if getattr(result, f"{stream}_truncated") and spec.on_truncated is not None:
                    spec.on_truncated(stream)
            return result
        with tempfile.TemporaryDirectory(prefix="tako-fake-") as folder:
            result = self._run_process(spec, Path(folder))
        result.warm = warm
        return result

    def _run_process(self, spec: RunSpec, folder: Path) -> RunResult:
        began = time.monotonic()
        main = folder / "code" / "main.py"
        main.parent.mkdir()
        main.write_text(spec.code, encoding="utf-8")
        (folder / "input").mkdir()
        (folder / "input" / "data.json").write_text(spec.input_json, encoding="utf-8")
        write_input_files(folder / "input", spec.input_files)
        (folder / "output").mkdir()
        report_r, report_w = os.pipe()  # the hook writes the exception that ended the program here
        # display() records go to a file, as the launcher's
        with os.fdopen(report_r, "rb") as report, tempfile.TemporaryFile(dir=folder) as display_file:
            try:
                process = self._start(spec, main, report_w, display_file.fileno())
            finally:
                os.close(report_w)
            code_began = time.monotonic()
            stdout, stderr, killed_by_us = self._watch(spec, process, deadline=code_began + spec.timeout)
            execution_ms = int((time.monotonic() - code_began) * 1000)
            exception = _exception_report(_read_available(report.fileno()))
            display_file.seek(0)
            displayed = wire.display_entries(display_file.read(wire.MAX_DISPLAY_BYTES))
        cancelled = killed_by_us and spec.cancel is not None and spec.cancel.is_set()
        returncode = process.returncode
        exit_code = KILLED_EXIT_CODE if killed_by_us else returncode if returncode >= 0 else 128 - returncode
        result_json, artifacts = _outputs(folder / "output")
        displays = displays_from({"displays": displayed}, artifacts)
        return RunResult(
            exit_code=exit_code,
            stdout=stdout.text(),
            stderr=stderr.text(),
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            timed_out=killed_by_us and not cancelled,
            cancelled=cancelled,
            exception=exception,
            result_json=result_json,
            artifacts=artifacts,
            displays=displays,
            resource_usage={"wall_time_ms": execution_ms},
            startup_ms=int((code_began - began) * 1000),
            execution_ms=execution_ms,
            image_ref=self.image_ref(spec.shape.image) or "",
            runtime="fake",
        )

    def _start(self, spec: RunSpec, main: Path, report_fd: int, display_fd: int) -> subprocess.Popen[bytes]:
        environment = {
            **dict(spec.shape.environment),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(main.parent.parent),
            "LANG": "C.UTF-8",
            "TAKO_REPORT_FD": str(report_fd),
            wire.DISPLAY_FD_ENV: str(display_fd),
            "TAKO_OUTPUT_DIR": str(main.parent.parent / "output"),
        }
        return subprocess.Popen(
            [self.python, "-I", "-u", "-c", PRELUDE, str(HOOK_DIR), str(main)],
            cwd=main.parent.parent,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(report_fd, display_fd),
            start_new_session=True,  # its process group ends with it, as a container would
        )

    def _watch(
        self, spec: RunSpec, process: subprocess.Popen[bytes], *, deadline: float
    ) -> tuple[CappedStream, CappedStream, bool]:
        """Read the program's output until it ends, or kill it at the deadline or on cancel.
        Returns its stdout, its stderr, and whether it was killed."""
        self._running[spec.execution_id] = process
        stdout, stderr = CappedStream(self.output_cap_bytes), CappedStream(self.output_cap_bytes)
        emit = emitter(spec.on_output, spec.on_truncated)
        assert process.stdout is not None and process.stderr is not None
        readers = [
            threading.Thread(target=_pump, args=(process.stdout, stdout, "stdout", emit), daemon=True),
            threading.Thread(target=_pump, args=(process.stderr, stderr, "stderr", emit), daemon=True),
        ]
        for reader in readers:
            reader.start()
        cancel = spec.cancel or threading.Event()
        try:
            if spec.on_container_start is not None:
                spec.on_container_start()
            while process.poll() is None and not cancel.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
            killed = process.poll() is None
        finally:
            _kill_group(process)  # and whatever it left behind
            process.wait()
            self._running.pop(spec.execution_id, None)
        gave_up = time.monotonic() + 1  # a process that left its own session may hold a pipe open
        for reader in readers:
            reader.join(timeout=max(gave_up - time.monotonic(), 0))
        return stdout, stderr, killed

    # -- the engine's other duties -----------------------------------------------------------
    def image_ref(self, image: str) -> str | None:
        if self.images is not None and image not in self.images:
            return None
        return f"{image.split(':')[0]}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"

    def remove_stale_containers(self) -> int:
        self._check_available()
        stopped = sum(self.stop(execution_id) for execution_id in list(self._running))
        with self._changed:
            removed, self._pool = len(self._pool), []
        self._notify()
        return stopped + removed

    def stop(self, execution_id: str) -> int:
        self._check_available()
        process = self._running.get(execution_id)
        if process is None:
            return 0
        _kill_group(process)
        return 1

    def running_executions(self) -> set[str]:
        self._check_available()
        return set(self._running)

    def ping(self) -> bool:
        return self.available

    def runtimes(self) -> list[str]:
        self._check_available()
        return ["runc", "runsc"]  # the runs it fakes may name either

    # -- the warm pool: in memory ------------------------------------------------------------
    def pool_start(self, shape: ContainerShape, pool: str, *, quick: bool = True) -> None:
        self._check_available()
        container = PooledContainer(
            name=f"fake-pool-{secrets.token_hex(8)}",
            pool=pool,
            pool_key=shape.pool_key_for(quick),
            state="ready",
            created=time.time(),
            workdir="",
        )
        with self._changed:
            self._pool.append(container)

    def pool_containers(self) -> list[PooledContainer]:
        self._check_available()
        with self._changed:
            return list(self._pool)

    def pool_changes(self) -> Iterator[None]:
        with self._changed:
            seen = self._changes
        while True:
            with self._changed:
                while self._changes == seen:
                    self._changed.wait()
                seen = self._changes
            yield None

    def pool_takes(self, stop: threading.Event) -> Iterator[None]:
        """Nothing: its takes are among pool_changes."""
        return iter(())

    def pool_remove(self, containers: list[PooledContainer]) -> None:
        self._check_available()
        names = {c.name for c in containers}
        with self._changed:
            self._pool = [c for c in self._pool if c.name not in names]
        self._notify()

    def _take_pooled(self, spec: RunSpec) -> bool:
        """One of the job's own weight first, else one of the other weight (as the engine's pool)."""
        keys = (spec.shape.pool_key_for(spec.quick), spec.shape.pool_key_for(not spec.quick))
        with self._changed:
            ready = next((c for key in keys for c in self._pool if c.pool_key == key and c.state == "ready"), None)
            if ready is None:
                return False
            self._pool.remove(ready)
        self._notify()
        return True

    def _notify(self) -> None:
        with self._changed:
            self._changes += 1
            self._changed.notify_all()

    def _check_available(self) -> None:
        if not self.available:
            raise SandboxUnavailable("The fake engine is down (FakeSandbox.available is False)")


def _pump(pipe: IO[bytes], capped: CappedStream, stream: str, emit: Emit) -> None:
    """Keep (capped) and pass on live what the program writes to one stream, until it closes."""
    with pipe:
        while data := os.read(pipe.fileno(), 65536):
            emit(stream, capped.feed(data), capped)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _read_available(fd: int) -> bytes:
    """What the pipe holds now: a process the program forked off may keep it open, so never wait."""
    os.set_blocking(fd, False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _exception_report(raw: bytes) -> ExceptionReport | None:
    """The hook's record of the exception that ended the program (its last line), if any."""
    try:
        report = json.loads(raw.decode("utf-8", errors="replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    mro, message = (report.get("mro"), report.get("message")) if isinstance(report, dict) else (None, None)
    if not isinstance(mro, list) or not all(isinstance(n, str) for n in mro) or not isinstance(message, str):
        return None
    return ExceptionReport(class_names=tuple(mro), message=message)


def _outputs(folder: Path) -> tuple[str | None, list[Artifact]]:
    """result.json's text and the other regular files the program left in output/."""
    result_json, artifacts = None, []
    for path in sorted(folder.iterdir()):
        if path.is_symlink() or not path.is_file():
            continue
        if path.name == RESULT_FILE:
            result_json = path.read_text(encoding="utf-8", errors="replace")
        else:
            artifacts.append(Artifact(name=path.name, data=path.read_bytes()))
    return result_json, artifacts
