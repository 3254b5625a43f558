"""The warm pool on the engine: containers started ahead of time, each waiting for one job.

Each pooled container has a host folder (under the deployment's own folder) that holds, from its
start until it is claimed, a READY_PREFIX + pool key file. A job finds candidates there, without
asking the engine, and claims one by renaming that file to TAKEN_FILE: the rename is atomic, so
exactly one claimant wins (a job, or the keeper draining it), and no engine call is on the way.
The winner writes its execution id into OWNER_FILE, which tells the reaper whose it is, and rings
the DOORBELL (a FIFO in the deployment's folder), which wakes a keeper on this host to start its
replacement: at once when the take emptied its pool, else once the job has run (the start's engine
work then does not compete with the job). The container keeps its name: its folder says it is taken.

A container that never became ready (no ready file, nor taken) is claimed through the engine
instead, by a rename to tako-claimed-<token>: the engine renames under the container's lock and
refuses a rename to the name it already has, so exactly one claimant wins. A job that took a
container which is gone, or dying, loses only its warm start: the runner sees its folder gone, the
engine refusing, or no code starting within half a second of the job line while the engine says it
has ended.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import secrets
import select
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import docker.errors

from executions.sandbox import ContainerShape, PooledContainer, RunSpec
from executions.sandbox.docker.client import (
    EXECUTION_LABEL,
    POOL_KEY_LABEL,
    POOL_LABEL,
    WORKDIR_LABEL,
    Engine,
    translate_docker_errors,
)
from executions.sandbox.docker.runner import Taken, cpu_shares_for, create, dispose, make_run_dir, remove_now

logger = logging.getLogger(__name__)

POOL_NAME_PREFIX = "tako-pool-"  # a ready pooled container
CLAIMED_NAME_PREFIX = "tako-claimed-"  # claimed by a job or for removal; the token stays
OWNER_FILE = "execution"  # in a claimed container's host folder: the execution it runs
READY_PREFIX = "ready-"  # + the pool key: in a ready container's host folder, until it is claimed
TAKEN_FILE = "taken"  # the ready file, renamed by the one who claimed the container
WANTED_PREFIX = "wanted-"  # + the pool key a job wanted, when it took one of the other CPU weight
CONTAINER_FILE = "container"  # the container's id, written before it is ready
DOORBELL = "doorbell"  # a FIFO in the deployment's pool folder: a take writes a byte to it
STARTING_SECONDS = 60  # a pooled container created this recently and not yet running is starting


class WarmPool:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def folder(self) -> Path:
        """The host folders of this deployment's pooled containers (deployments may share work_dir)."""
        deployment = hashlib.sha256(self.engine.config.deployment_id.encode()).hexdigest()[:16]
        return self.engine.config.work_dir / "pool" / deployment

    def start(self, shape: ContainerShape, pool: str, *, quick: bool = True) -> None:
        """Create and start one container of `shape`, waiting for a job of pool `pool`, at the CPU
        weight of quick work (else of long jobs)."""
        run_dir = make_run_dir(self.folder / secrets.token_hex(8))
        key = shape.pool_key_for(quick)
        labels = {POOL_LABEL: pool, POOL_KEY_LABEL: key, WORKDIR_LABEL: str(run_dir)}
        container_id = None
        try:
            with translate_docker_errors("Starting a pooled container"):
                container_id = create(
                    self.engine,
                    shape,
                    run_dir,
                    labels=labels,
                    name=POOL_NAME_PREFIX + run_dir.name,
                    cpu_shares=cpu_shares_for(quick),
                )
                self.engine.api.start(container_id)
            (run_dir / CONTAINER_FILE).write_text(container_id)
            (run_dir / (READY_PREFIX + key)).touch()  # jobs may take it now
        except BaseException:
            dispose(self.engine, container_id, run_dir)
            raise

    def containers(self) -> list[PooledContainer]:
        """This deployment's pooled containers (ready, in use, dead or claimed)."""
        pooled = []
        for summary in self.engine.managed():
            labels, name = summary.get("Labels") or {}, _name_of(summary)
            if POOL_LABEL not in labels:
                continue
            workdir = Path(labels.get(WORKDIR_LABEL, "/nonexistent"))
            wanted = ""
            if name.startswith(CLAIMED_NAME_PREFIX) or (workdir / TAKEN_FILE).exists():
                # Taken by a job, or claimed for a moment (by a job, for removal), or left so by a fault.
                state = "in_use" if container_execution(summary) else "claimed"
                wanted_file = next(workdir.glob(WANTED_PREFIX + "*"), None)
                wanted = wanted_file.name.removeprefix(WANTED_PREFIX) if wanted_file is not None else ""
            elif name.startswith(POOL_NAME_PREFIX):
                # Without its host folder (an engine fault cut its start short) it can serve no job.
                usable = summary.get("State") == "running" and workdir.is_dir()
                # Not running yet, and never ready: another keeper may be starting it this moment
                # (keepers of one deployment share the engine): not dead until that has had its time.
                starting = (
                    summary.get("State") == "created"
                    and time.time() - float(summary.get("Created", 0)) < STARTING_SECONDS
                )
                state = "ready" if usable else "starting" if starting else "dead"
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
                    wanted_key=wanted,
                )
            )
        return pooled

    def changes(self) -> Iterator[None]:
        """Yields whenever a ready pooled container ends, or one is claimed through the engine.

        Not for a take (the doorbell says so: `takes`), nor for the end or removal of a taken
        container: that is a job's end, which the doorbell already told of when it mattered, and
        waking the keeper for it costs a listing of the engine's containers per job. Its periodic
        tick sees the rest."""
        filters = {"type": "container", "label": [self.engine.label_filter, POOL_LABEL], "event": ["rename", "die"]}
        with translate_docker_errors("Watching the pool"), closing(self.engine.events(filters)) as events:
            for event in events:
                name = str(((event.get("Actor") or {}).get("Attributes") or {}).get("name", ""))
                if event.get("Action") == "rename" or (name.startswith(POOL_NAME_PREFIX) and self._waiting(name)):
                    yield None

    def _waiting(self, name: str) -> bool:
        """Was the pooled container `name` still waiting for a job? (Not if taken, nor if its
        folder is gone: removed by its job's end or by a keeper, which knows.)"""
        folder = self.folder / _token_of(name)
        return folder.is_dir() and not (folder / TAKEN_FILE).exists()

    def remove(self, containers: list[PooledContainer]) -> None:
        """Remove pooled containers; a job that took one meanwhile keeps it."""
        for container in containers:
            workdir = Path(container.workdir) if container.workdir else None
            # Left claimed by a fault (nobody else will use it), or ready and claimed here now.
            if container.state == "claimed" or (workdir is not None and _claim_ready(workdir)):
                remove_now(self.engine, container.name, workdir)
            elif (workdir is None or not (workdir / TAKEN_FILE).exists()) and self._claim(container.name):
                # Never ready (or its folder gone): the engine's rename decides who has it.
                remove_now(self.engine, CLAIMED_NAME_PREFIX + _token_of(container.name), workdir)
            # else a job took it: it is theirs

    def take(self, spec: RunSpec) -> Taken | None:
        """Claim a ready pooled container of the job's shape, one waiting at the job's CPU weight
        first, or None."""
        for quick in (spec.quick, not spec.quick):
            taken = self._take(spec, quick)
            if taken is not None:
                return taken
        return None

    def _take(self, spec: RunSpec, quick: bool) -> Taken | None:
        candidates = list(self.folder.glob(f"*/{READY_PREFIX}{spec.shape.pool_key_for(quick)}"))
        random.shuffle(candidates)  # concurrent takers rarely race for the same one
        for ready in candidates:
            workdir = ready.parent
            if not _claim_ready(workdir, ready):
                continue
            try:
                (workdir / OWNER_FILE).write_text(spec.execution_id)
                container_id = (workdir / CONTAINER_FILE).read_text()
                if quick != spec.quick:  # (tells the keeper, woken by the doorbell, that its weight's pool is wanted)
                    (workdir / (WANTED_PREFIX + spec.shape.pool_key_for(spec.quick))).touch()
            except FileNotFoundError:
                # Its folder is gone: an engine fault cut its start short after the engine had
                # made it (the keeper cleaned up what it believed failed). Unusable: remove it.
                remove_now(self.engine, POOL_NAME_PREFIX + workdir.name, None)
                continue
            if quick == spec.quick and any(other.exists() for other in candidates if other != ready):
                return Taken(container_id, workdir, quick, after_run=self._ring)  # (others serve meanwhile)
            self._ring()  # its pool is empty, or the other weight's was wanted: started at once
            return Taken(container_id, workdir, quick)
        return None

    def _ring(self) -> None:
        """Wake a keeper on this host (a take needs its replacement started). Never blocks, never
        raises, and costs no engine call; with no keeper listening, a keeper's next tick sees it."""
        try:
            bell = os.open(self.folder / DOORBELL, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no keeper has it open (ENXIO), or none made it yet (ENOENT)
            return
        try:
            os.write(bell, b"\n")
        except OSError:  # full of unread rings (they wake it anyway), or its keeper closed it meanwhile
            pass
        finally:
            os.close(bell)

    def takes(self, stop: threading.Event) -> Iterator[None]:
        """Yields whenever a job on this host tells of a take (at the take, or after its run: see
        the module's doc), until `stop` is set."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / DOORBELL
        with contextlib.suppress(FileExistsError):
            os.mkfifo(path, 0o600)
        # Read and write: a FIFO opened so never reports an end when a ringing job closes it.
        bell = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        if not stat.S_ISFIFO(os.fstat(bell).st_mode):  # something else took its name: poll would
            os.close(bell)  # always find it readable, and the keeper would spin
            path.unlink()
            os.mkfifo(path, 0o600)
            bell = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        try:
            poller = select.poll()
            poller.register(bell, select.POLLIN)
            while not stop.is_set():
                if poller.poll(1000):  # (a second at most: `stop` is looked at again)
                    with contextlib.suppress(BlockingIOError):  # another keeper read the rings first
                        os.read(bell, 4096)
                    yield None
        finally:
            os.close(bell)

    def _claim(self, pool_name: str) -> bool:
        """Rename a pooled container to its one claimed name; True for the one caller that did."""
        try:
            self.engine.api.rename(pool_name, CLAIMED_NAME_PREFIX + _token_of(pool_name))
        except docker.errors.APIError as exc:
            if exc.is_server_error():
                raise
            return False  # gone (404), the name taken (409) or already its name (400): another won
        return True


def _claim_ready(workdir: Path, ready: Path | None = None) -> bool:
    """Claim a ready pooled container by renaming its ready file; True for the one caller that did."""
    if ready is None:
        ready = next(workdir.glob(READY_PREFIX + "*"), None)
        if ready is None:
            return False
    try:
        os.rename(ready, workdir / TAKEN_FILE)
    except FileNotFoundError:
        return False  # another claimant renamed it first (or the folder is gone)
    return True


def container_execution(summary: dict[str, Any]) -> str:
    """The execution a container runs: its label, or the owner a pooled one got when it was taken."""
    labels = summary.get("Labels") or {}
    if labels.get(EXECUTION_LABEL):
        return str(labels[EXECUTION_LABEL])
    if POOL_LABEL in labels and labels.get(WORKDIR_LABEL):  # (a taken one keeps its pool name)
        try:
            return (Path(labels[WORKDIR_LABEL]) / OWNER_FILE).read_text()
        except OSError:
            return ""
    return ""


def _name_of(summary: dict[str, Any]) -> str:
    names = summary.get("Names") or [""]
    return str(names[0]).lstrip("/")


def _token_of(name: str) -> str:
    return name.rsplit("-", 1)[1]
