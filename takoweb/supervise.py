"""Runs a host's long-running processes and restarts any that dies: `python -m takoweb.supervise`.

`make run` starts the whole service through it (the web server, the worker cluster with its warm
pool keeper, and the background image build); deploy/ has the same for compose (restart policies)
and systemd (one unit per process, `Restart=always`). Stdlib only, so it starts before Django and
keeps running whatever a child does.

A process that dies is started again after a pause that doubles from 1 s up to 30 s while it keeps
dying young, and drops back to 1 s once it has run for a minute; every exit and restart is one log
line. A one-shot process (the image build) is started again only when it fails, a few times. On
SIGTERM or SIGINT every child gets SIGTERM (each runs in its own process group, so a terminal's
Ctrl-C reaches only this supervisor, which stops each child the way it expects); whatever is still
running 15 s later is killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

FIRST_PAUSE = 1.0
LONGEST_PAUSE = 30.0
HEALTHY_AFTER = 60.0  # a process that ran this long restarts at once (after FIRST_PAUSE)
STOP_GRACE = 15.0
ONE_SHOT_TRIES = 5


@dataclass(frozen=True)
class Program:
    name: str
    argv: Sequence[str]
    one_shot: bool = False  # done when it exits 0; restarted only after a failure
    env: Mapping[str, str] | None = None  # its environment (None: this process's)


def service_programs(python: str = sys.executable) -> list[Program]:
    """What one host of `make run` runs: web, the worker cluster (its keeper beside it), images."""
    manage = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "manage.py")
    return [
        Program("images", [python, manage, "tako_images", "build"], one_shot=True),
        Program("worker", [python, manage, "tako_worker"]),
        Program("web", [python, "-m", "takoweb.serve"]),
    ]


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} supervise: {message}", file=sys.stderr, flush=True)


@dataclass
class _Child:
    program: Program
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    pause: float = FIRST_PAUSE
    restart_at: float | None = None
    failures: int = 0
    done: bool = False
    restarts: int = 0


class Supervisor:
    def __init__(self, programs: Sequence[Program], *, first_pause: float = FIRST_PAUSE) -> None:
        self.children = [_Child(p, pause=first_pause) for p in programs]
        self.first_pause = first_pause
        self.stopping = threading.Event()

    def run(self) -> int:
        """Start everything, restart what dies until stop(), then stop everything."""
        self.start_all()
        while not self.stopping.is_set():
            self.tick()
            self.stopping.wait(0.2)
        self.stop_all()
        return 0

    def start_all(self) -> None:
        for child in self.children:
            self._start(child)

    def tick(self) -> None:
        """Notice exits and start again whatever has waited out its pause."""
        now = time.monotonic()
        for child in self.children:
            self._look_after(child, now)

    def _start(self, child: _Child) -> None:
        child.process = subprocess.Popen(child.program.argv, start_new_session=True, env=child.program.env)
        child.started_at = time.monotonic()
        child.restart_at = None
        log(f"{child.program.name} started (pid {child.process.pid})")

    def _look_after(self, child: _Child, now: float) -> None:
        if child.done:
            return
        if child.process is None:  # waiting out its pause
            if child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self._start(child)
            return
        code = child.process.poll()
        if code is None:
            return
        ran = now - child.started_at
        child.process = None
        if child.program.one_shot and code == 0:
            child.done = True
            log(f"{child.program.name} finished")
            return
        if child.program.one_shot:
            child.failures += 1
            if child.failures >= ONE_SHOT_TRIES:
                child.done = True
                log(f"{child.program.name} failed {child.failures} times (last exit {code}); not trying again")
                return
        if ran >= HEALTHY_AFTER:
            child.pause = self.first_pause
        wait, child.pause = child.pause, min(child.pause * 2, LONGEST_PAUSE)
        child.restart_at = now + wait
        log(f"{child.program.name} exited with {_describe(code)} after {ran:.1f} s; restarting in {wait:g} s")

    def stop_all(self) -> None:
        running = [c for c in self.children if c.process is not None and c.process.poll() is None]
        for child in running:
            assert child.process is not None
            log(f"stopping {child.program.name} (pid {child.process.pid})")
            child.process.terminate()
        deadline = time.monotonic() + STOP_GRACE
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{child.program.name} did not stop within {STOP_GRACE:.0f} s; killing it")
        for child in running:  # its whole group: workers a cluster forked too
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)

    def stop(self, *_: object) -> None:
        self.stopping.set()


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def main(argv: Sequence[str] = ()) -> int:
    """`python -m takoweb.supervise [NAME ...]`: the programs named (web, worker, images), or all."""
    programs = service_programs()
    if argv:
        unknown = set(argv) - {p.name for p in programs}
        if unknown:
            log(f"no such program: {', '.join(sorted(unknown))} (there are {', '.join(p.name for p in programs)})")
            return 2
        programs = [p for p in programs if p.name in argv]
    supervisor = Supervisor(programs)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, supervisor.stop)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
