"""Building the image of a job type: `tako-vm-{name}:latest`.

The base is `python:3.11-slim` where a registry answers, else an image made offline from the
machine's own Debian mirror (debootstrap + import). Packages are resolved and downloaded as
wheels by pip on the host and copied in, so the build needs no network inside Docker. The image
carries a hash of everything it is built from; an image whose hash matches is never rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from executions.sandbox import SandboxError, get_sandbox
from executions.sandbox.docker import DockerConfig, DockerImages, DockerSandbox
from executions.sandbox.packages import PackageError, install_into

logger = logging.getLogger(__name__)

SANDBOX_DIR = Path(__file__).resolve().parent
DOCKERFILE = SANDBOX_DIR / "Dockerfile"
BOOTSTRAP_DIR = SANDBOX_DIR / "bootstrap"
REGISTRY_BASE = "python:3.11-slim"
OFFLINE_BASE = "tako-vm-base:bookworm"
HASH_LABEL = "tako.definition-hash"


class ImageBuildError(Exception):
    """A job-type image could not be built; the message says which step failed and why."""


@dataclass(frozen=True)
class BuildResult:
    image: str
    built: bool  # False when the existing image was already up to date
    seconds: float
    size_bytes: int
    base: str
    digest: str  # sha256:… image id


def image_name(job_type: str) -> str:
    return f"tako-vm-{job_type}:latest"


def _docker() -> DockerSandbox:
    sandbox = get_sandbox()
    assert isinstance(sandbox, DockerSandbox)
    return sandbox


def definition_hash(*, requirements: list[str], base: str) -> str:
    """Hash of everything an image is built from: the Dockerfile, the launcher, base, packages."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"requirements": sorted(requirements), "base": base}).encode())
    for path in sorted([DOCKERFILE, *BOOTSTRAP_DIR.rglob("*")]):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(SANDBOX_DIR)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_image(
    job_type: str, *, requirements: list[str], force: bool = False, log: Callable[[str], None] = logger.info
) -> BuildResult:
    """Build `tako-vm-{job_type}:latest` unless an up-to-date one exists (or `force`)."""
    sandbox = _docker()
    images = sandbox.images
    image = image_name(job_type)
    began = time.monotonic()
    base = _ensure_base(images, sandbox.config, log)
    wanted = definition_hash(requirements=requirements, base=base)
    labels = images.labels(image)
    previous_id = images.image_id(image) if labels is not None else None
    if labels is not None and labels.get(HASH_LABEL) == wanted and not force:
        return BuildResult(image, False, time.monotonic() - began, images.size(image), base, previous_id or "")
    log(f"Building {image} on {base}" + (f" with {', '.join(requirements)}" if requirements else ""))
    with tempfile.TemporaryDirectory(prefix="tako-build-") as tmp:
        context = Path(tmp)
        shutil.copy(DOCKERFILE, context / "Dockerfile")
        shutil.copytree(BOOTSTRAP_DIR, context / "bootstrap", ignore=shutil.ignore_patterns("__pycache__"))
        try:
            install_into(requirements, context / "packages")
        except PackageError as exc:
            raise ImageBuildError(f"Installing {', '.join(requirements)} failed: {exc}") from exc
        try:
            images.build(
                context,
                image,
                build_args={"BASE_IMAGE": base},
                labels={HASH_LABEL: wanted, "tako.job-type": job_type, "tako.base": base},
            )
        except SandboxError as exc:
            raise ImageBuildError(str(exc)) from exc
    if previous_id and previous_id != images.image_id(image):
        images.remove_unused(previous_id)
    seconds = time.monotonic() - began
    log(f"Built {image} in {seconds:.1f}s")
    return BuildResult(image, True, seconds, images.size(image), base, images.image_id(image) or "")


def keep_version(job_type: str, image_id: str, tag: str) -> str:
    """Name a built image `tako-vm-{job_type}:{tag}` (a version of the job type), so that later
    builds, which move `:latest`, leave it in place; returns that name."""
    repository = image_name(job_type).partition(":")[0]
    _docker().images.tag(image_id, repository, tag)
    return f"{repository}:{tag}"


# -- the base image ------------------------------------------------------------------------------
def _ensure_base(images: DockerImages, config: DockerConfig, log: Callable[[str], None]) -> str:
    mode = config.image_base
    if mode in ("auto", "registry"):
        if images.labels(REGISTRY_BASE) is not None:
            return REGISTRY_BASE
        if mode == "auto" and images.labels(OFFLINE_BASE) is not None:
            return OFFLINE_BASE
        log(f"Pulling {REGISTRY_BASE}")
        if images.pull(REGISTRY_BASE):
            return REGISTRY_BASE
        if mode == "registry":
            raise ImageBuildError(f"Could not pull {REGISTRY_BASE} and TAKO_IMAGE_BASE=registry")
        log("No container registry answers: making the base image offline from Debian's packages")
    if images.labels(OFFLINE_BASE) is None:
        _build_offline_base(images, config.debian_mirror, log)
    return OFFLINE_BASE


def _debian_mirror(configured: str) -> str:
    if configured:
        return configured
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        for line in listing.read_text().splitlines():
            match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+\s", line)
            if match and "security" not in match.group(1):
                return match.group(1)
    raise ImageBuildError(
        "No registry answers and no Debian mirror is known: set TAKO_DEBIAN_MIRROR or TAKO_IMAGE_BASE"
    )


def _build_offline_base(images: DockerImages, configured_mirror: str, log: Callable[[str], None]) -> None:
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is needed to make the base image offline (apt-get install debootstrap)")
    mirror = _debian_mirror(configured_mirror)
    log(f"Making {OFFLINE_BASE} with debootstrap (about a minute)")
    with tempfile.TemporaryDirectory(prefix="tako-rootfs-") as rootfs:
        _run(
            ["debootstrap", "--variant=minbase", "--include=python3", "bookworm", rootfs, mirror],
            what="debootstrap of the base image",
        )
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            images.import_rootfs(tar.stdout, OFFLINE_BASE)
        except SandboxError as exc:
            raise ImageBuildError(str(exc)) from exc
        finally:
            tar.stdout.close()
            tar.wait()


def _run(command: list[str], *, what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise ImageBuildError(f"{what} failed: {' '.join(detail[-5:])}")
