"""The connection to the Docker engine: configuration, clients and their timeouts, how engine
failures become sandbox errors, and the labels that mark this deployment's containers."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.utils import kwargs_from_env

from executions.sandbox import SandboxError, SandboxUnavailable

MANAGED_LABEL = "tako.deployment"  # its value: DockerConfig.deployment_id
EXECUTION_LABEL = "tako.execution_id"  # containers created for one run
POOL_LABEL = "tako.pool"  # pooled containers: the environment they were started for
POOL_KEY_LABEL = "tako.pool_key"  # … and their ContainerShape.pool_key
WORKDIR_LABEL = "tako.workdir"  # … and the host folder mounted at /code and /input
DEFAULT_WORK_DIR = Path(tempfile.gettempdir()) / "tako-runs"


@dataclass(frozen=True)
class DockerConfig:
    """Everything the Docker sandbox is configured with (get_sandbox() fills it from settings)."""

    # Names this deployment's containers, so that two deployments sharing one engine never reap
    # or clean up each other's.
    deployment_id: str = "default"
    work_dir: Path = DEFAULT_WORK_DIR  # per-run /code and /input folders: the engine must see this path
    output_cap_bytes: int = 65536  # stdout / stderr kept per run
    engine_timeout: int = 30  # seconds a Docker call may take before it counts as failed
    ping_timeout: int = 2  # seconds; /health never waits on it (see executions/health.py)
    image_base: str = "auto"  # auto | registry | offline: where job-type images start (images.py)
    debian_mirror: str = ""  # for the offline base; empty: the machine's own apt source


@contextmanager
def translate_docker_errors(action: str) -> Iterator[None]:
    """Engine unreachable / 5xx → SandboxUnavailable (transient); anything else → SandboxError."""
    try:
        yield
    except docker.errors.ImageNotFound as exc:
        raise SandboxError(f"{action}: image not found ({exc.explanation})") from exc
    except docker.errors.APIError as exc:
        if "unknown runtime" in str(exc.explanation or "").lower():  # not set up on this engine
            raise SandboxUnavailable(
                f"{action}: the engine has no such runtime ({exc.explanation}); "
                "scripts/setup.sh registers gVisor's runsc (scripts/ensure-runsc.sh)"
            ) from exc
        if exc.is_server_error():
            raise SandboxUnavailable(f"{action}: Docker engine error: {exc.explanation}") from exc
        raise SandboxError(f"{action}: {exc.explanation}") from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise SandboxUnavailable(f"{action}: Docker engine unreachable") from exc
    except docker.errors.DockerException as exc:
        raise SandboxUnavailable(f"{action}: {exc}") from exc
    # The engine's connection cut mid-call: a raw attach socket (broken pipe, reset), a response
    # cut short. The engine going away, not a fault of ours.
    except (ConnectionError, TimeoutError, requests.exceptions.RequestException) as exc:
        raise SandboxUnavailable(f"{action}: the connection to the Docker engine was lost ({exc})") from exc


class Engine:
    """One deployment's connection to the engine (found from DOCKER_HOST and friends)."""

    def __init__(self, config: DockerConfig, client: docker.DockerClient | None = None) -> None:
        self.config = config
        self._client = client
        self._ping_client: docker.APIClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> docker.DockerClient:
        # Created on first use (and again after a failure), so the service starts without Docker.
        with self._lock:
            if self._client is None:
                with translate_docker_errors("Connecting to Docker"):
                    self._client = docker.from_env(version="auto", timeout=self.config.engine_timeout)
            return self._client

    @property
    def api(self) -> docker.APIClient:
        return self.client.api

    def close(self) -> None:
        with self._lock:
            clients, self._client, self._ping_client = (self._client, self._ping_client), None, None
        for client in clients:
            if client is not None:
                client.close()

    def ping(self) -> bool:
        try:
            if self._ping_client is None:  # its own client: a short timeout, and never the lock
                self._ping_client = docker.APIClient(
                    **kwargs_from_env(), version="auto", timeout=self.config.ping_timeout
                )
            return bool(self._ping_client.ping())
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
            return False

    def events(self, filters: dict[str, Any]) -> Generator[dict[str, Any], None, None]:
        """The engine's events matching `filters`, as they happen (blocks in between)."""
        # Its own client: the stream holds a connection open (with no timeout: events waits).
        events = docker.APIClient(**kwargs_from_env(), version="auto")
        try:
            yield from events.events(filters=filters, decode=True)
        finally:
            events.close()

    @property
    def labels(self) -> dict[str, str]:
        """The labels every container of this deployment carries."""
        return {MANAGED_LABEL: self.config.deployment_id}

    @property
    def label_filter(self) -> str:
        """The label filter matching this deployment's containers, and no other deployment's."""
        return f"{MANAGED_LABEL}={self.config.deployment_id}"

    def managed(self) -> list[dict[str, Any]]:
        """Summaries of this deployment's containers, running or not."""
        with translate_docker_errors("Listing containers"):
            return list(self.api.containers(all=True, filters={"label": self.label_filter}))
