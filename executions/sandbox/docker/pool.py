"""The warm pool on the engine: containers started ahead of time, each waiting for one job.

A pooled container is claimed by renaming it from tako-pool-<token> to tako-claimed-<token>: every
claimant asks for that same new name, and the engine renames under the container's lock, refusing
a rename to the name it already has, so exactly one claimant wins (a job, or the keeper draining
it). The name never changes again (a late claimant must keep failing). A job that won writes its
execution id into the container's host folder (OWNER_FILE), which tells the reaper whose it is.

A job finds the candidates without asking the engine: each pooled container's host folder (under
the deployment's own folder) holds a READY_PREFIX + pool key file from its start until it is
claimed. The rename, one engine call, stays the claim; a folder whose container is gone only costs
a failed rename, and one whose container died unseen is caught by the runner (no code started).
"""

from __future__ import annotations

import hashlib
import random
import secrets
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
from executions.sandbox.docker.runner import create, dispose, make_run_dir, remove_now

POOL_NAME_PREFIX = "tako-pool-"  # a ready pooled container
CLAIMED_NAME_PREFIX = "tako-claimed-"  # claimed by a job or for removal; the token stays
OWNER_FILE = "execution"  # in a claimed container's host folder: the execution it runs
READY_PREFIX = "ready-"  # + the pool key: in a ready container's host folder, until it is claimed


class WarmPool:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def folder(self) -> Path:
        """The host folders of this deployment's pooled containers (deployments may share work_dir)."""
        deployment = hashlib.sha256(self.engine.config.deployment_id.encode()).hexdigest()[:16]
        return self.engine.config.work_dir / "pool" / deployment

    def start(self, shape: ContainerShape, pool: str) -> None:
        """Create and start one container of `shape`, waiting for a job of pool `pool`."""
        run_dir = make_run_dir(self.folder / secrets.token_hex(8))
        labels = {POOL_LABEL: pool, POOL_KEY_LABEL: shape.pool_key, WORKDIR_LABEL: str(run_dir)}
        container_id = None
        try:
            with translate_docker_errors("Starting a pooled container"):
                container_id = create(self.engine, shape, run_dir, labels=labels, name=POOL_NAME_PREFIX + run_dir.name)
                self.engine.api.start(container_id)
            (run_dir / (READY_PREFIX + shape.pool_key)).touch()  # jobs may take it now
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
            if name.startswith(POOL_NAME_PREFIX):
                # Without its host folder (an engine fault cut its start short) it can serve no job.
                usable = summary.get("State") == "running" and Path(labels.get(WORKDIR_LABEL, "/nonexistent")).is_dir()
                state = "ready" if usable else "dead"
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

    def changes(self) -> Iterator[None]:
        """Yields whenever a pooled container is taken (renamed) or a ready one ends.

        Not for the end or removal of a taken one: that is a job's end, which changes nothing in
        the pool (its replacement was started when it was taken), and waking the keeper for it
        costs a listing of the engine's containers per job. Its periodic tick sees the rest."""
        filters = {"type": "container", "label": [self.engine.label_filter, POOL_LABEL], "event": ["rename", "die"]}
        with translate_docker_errors("Watching the pool"), closing(self.engine.events(filters)) as events:
            for event in events:
                name = str(((event.get("Actor") or {}).get("Attributes") or {}).get("name", ""))
                if event.get("Action") == "rename" or name.startswith(POOL_NAME_PREFIX):
                    yield None

    def remove(self, containers: list[PooledContainer]) -> None:
        """Remove pooled containers; a job that took one meanwhile keeps it."""
        for container in containers:
            workdir = Path(container.workdir) if container.workdir else None
            if container.state == "claimed":  # left claimed by a fault: nobody else will use it
                remove_now(self.engine, container.name, workdir)
            elif self._claim(container.name):  # else a job took it: it is theirs
                remove_now(self.engine, CLAIMED_NAME_PREFIX + _token_of(container.name), workdir)

    def take(self, spec: RunSpec) -> tuple[str, Path] | None:
        """Claim a ready pooled container of the job's shape, or None: (its name, its host folder)."""
        candidates = list(self.folder.glob(f"*/{READY_PREFIX}{spec.shape.pool_key}"))
        random.shuffle(candidates)  # concurrent takers rarely race for the same one
        for ready in candidates:
            workdir = ready.parent
            if self._claim(POOL_NAME_PREFIX + workdir.name):
                claimed = CLAIMED_NAME_PREFIX + workdir.name
                try:
                    (workdir / OWNER_FILE).write_text(spec.execution_id)
                    ready.unlink()
                except FileNotFoundError:
                    # Its folder is gone: an engine fault cut its start short after the engine had
                    # made it (the keeper cleaned up what it believed failed). Unusable: remove it.
                    remove_now(self.engine, claimed, None)
                    continue
                return claimed, workdir
        return None

    def _claim(self, pool_name: str) -> bool:
        """Rename a ready pooled container to its one claimed name; True for the one caller that did."""
        try:
            self.engine.api.rename(pool_name, CLAIMED_NAME_PREFIX + _token_of(pool_name))
        except docker.errors.APIError as exc:
            if exc.is_server_error():
                raise
            return False  # gone (404), the name taken (409) or already its name (400): another won
        return True


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


def _name_of(summary: dict[str, Any]) -> str:
    names = summary.get("Names") or [""]
    return str(names[0]).lstrip("/")


def _token_of(name: str) -> str:
    return name.rsplit("-", 1)[1]
