"""The Docker implementation of the sandbox: the only package that imports the docker SDK.

One run = one container, used once: either taken from the warm pool (pool.py: created and started
ahead of time, waiting for a job) or created for the run (runner.py). The engine connection and
its configuration are in client.py, the container's streams in stream.py, the image store in
images.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker

from executions.sandbox import ContainerShape, PooledContainer, RunResult, RunSpec, get_sandbox
from executions.sandbox.docker import runner
from executions.sandbox.docker.client import WORKDIR_LABEL, DockerConfig, Engine, translate_docker_errors
from executions.sandbox.docker.images import DockerImages
from executions.sandbox.docker.pool import POOL_NAME_PREFIX, WarmPool, container_execution
from executions.sandbox.docker.stream import CappedStream, StdoutSplitter

__all__ = [
    "POOL_NAME_PREFIX",
    "CappedStream",
    "DockerConfig",
    "DockerImages",
    "DockerSandbox",
    "StdoutSplitter",
    "container_execution",
    "managed_label_filter",
    "managed_labels",
]


class DockerSandbox:
    """The Sandbox (see executions.sandbox.Sandbox for what each method promises) on a Docker engine."""

    def __init__(self, config: DockerConfig | None = None, *, client: docker.DockerClient | None = None) -> None:
        self.config = config or DockerConfig()
        self.engine = Engine(self.config, client)
        self.images = DockerImages(self.engine)
        self._pool = WarmPool(self.engine)

    def run(self, spec: RunSpec) -> RunResult:
        pooled = spec.warm_pool and spec.shape.wheels_dir is None
        return runner.run(self.engine, spec, self._take_pooled if pooled else None)

    def image_ref(self, image: str) -> str | None:
        return self.images.ref(image)

    def remove_stale_containers(self) -> int:
        return self._remove_where(lambda summary: True)

    def stop(self, execution_id: str) -> int:
        return self._remove_where(lambda summary: container_execution(summary) == execution_id)

    def running_executions(self) -> set[str]:
        return {execution for summary in self.engine.managed() if (execution := container_execution(summary))}

    def ping(self) -> bool:
        return self.engine.ping()

    def runtimes(self) -> list[str]:
        with translate_docker_errors("Asking the engine for its runtimes"):
            return sorted(self.engine.api.info().get("Runtimes") or {})

    def close(self) -> None:
        """Close its connections to the engine (used again, it opens new ones)."""
        self.engine.close()

    # The pool's engine faults reach the keeper as SandboxUnavailable / SandboxError, never as the
    # SDK's or requests' own exceptions (a connection refused mid-rename once killed the keeper).
    def pool_start(self, shape: ContainerShape, pool: str, *, quick: bool = True) -> None:
        with translate_docker_errors("Starting a pooled container"):
            self._pool.start(shape, pool, quick=quick)

    def pool_containers(self) -> list[PooledContainer]:
        with translate_docker_errors("Listing the pool"):
            return self._pool.containers()

    def pool_changes(self) -> Iterator[None]:
        return self._pool.changes()

    def pool_takes(self, stop: threading.Event) -> Iterator[None]:
        return self._pool.takes(stop)

    def pool_remove(self, containers: list[PooledContainer]) -> None:
        with translate_docker_errors("Removing pooled containers"):
            self._pool.remove(containers)

    def _take_pooled(self, spec: RunSpec) -> runner.Taken | None:
        return self._pool.take(spec)

    def _remove_where(self, wanted: Callable[[dict[str, Any]], bool]) -> int:
        found = [summary for summary in self.engine.managed() if wanted(summary)]
        for summary in found:
            workdir = (summary.get("Labels") or {}).get(WORKDIR_LABEL)
            runner.remove_now(self.engine, str(summary["Id"]), Path(workdir) if workdir else None)
        return len(found)


def managed_labels() -> dict[str, str]:
    """The labels that mark the process-wide sandbox's containers (for tests and tools)."""
    return _process_sandbox().engine.labels


def managed_label_filter() -> str:
    """The label filter matching the process-wide sandbox's containers, and no other deployment's."""
    return _process_sandbox().engine.label_filter


def _process_sandbox() -> DockerSandbox:
    sandbox = get_sandbox()
    assert isinstance(sandbox, DockerSandbox)
    return sandbox
