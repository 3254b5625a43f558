"""The engine's image store: what executions/sandbox/images.py needs to build job-type images."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import docker.errors
import requests.exceptions

from executions.sandbox import SandboxError
from executions.sandbox.docker.client import Engine, translate_docker_errors

logger = logging.getLogger(__name__)


class DockerImages:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def ref(self, image: str) -> str | None:
        """`name@sha256:…` of a local image, or None when it is not there."""
        image_id = self.image_id(image)
        return None if image_id is None else f"{image.split(':')[0]}@{image_id}"

    def labels(self, image: str) -> dict[str, str] | None:
        """The image's labels, or None when the image is not there."""
        with translate_docker_errors("Inspecting the image"):
            try:
                found = self._engine.client.images.get(image)
            except docker.errors.ImageNotFound:
                return None
        return dict(found.labels or {})

    def image_id(self, image: str) -> str | None:
        with translate_docker_errors("Inspecting the image"):
            try:
                return str(self._engine.client.images.get(image).id)
            except docker.errors.ImageNotFound:
                return None

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        """Give the image another name (which also keeps a rebuild from removing it)."""
        with translate_docker_errors("Tagging the image"):
            self._engine.client.images.get(image_id).tag(repository, tag)

    def remove_unused(self, image_id: str) -> None:
        """Remove an image that a rebuild replaced; kept if a container still uses it."""
        try:
            self._engine.client.images.remove(image_id, noprune=False)
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            logger.info("Kept replaced image %s: %s", image_id, exc)

    def size(self, image: str) -> int:
        with translate_docker_errors("Inspecting the image"):
            return int(self._engine.client.images.get(image).attrs.get("Size", 0))

    def pull(self, image: str) -> bool:
        """Pull from a registry; False when none answers (as on machines with no registry)."""
        repository, _, tag = image.partition(":")
        try:
            self._engine.client.images.pull(repository, tag=tag or "latest")
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            logger.info("Could not pull %s: %s", image, exc)
            return False
        return True

    def import_rootfs(self, stream: Any, image: str) -> None:
        repository, _, tag = image.partition(":")
        with translate_docker_errors("Importing the base image"):
            self._engine.client.api.import_image_from_stream(stream, repository=repository, tag=tag)

    def build(self, context: Path, image: str, *, build_args: dict[str, str], labels: dict[str, str]) -> None:
        with translate_docker_errors(f"Building {image}"):
            try:
                self._engine.client.images.build(
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
