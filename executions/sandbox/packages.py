"""Python packages for the sandbox, resolved on the host (the containers have no network).

One pip invocation for both uses: installing an environment's packages into its image, and
filling the host-side wheel cache that per-run `requirements` are installed from.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PYTHON_VERSION = "3.11"  # the images' Python (python:3.11-slim, or Debian bookworm's)
PIP_TIMEOUT = 600


class PackageError(Exception):
    """pip could not resolve or fetch the packages; the message is pip's own."""


def _target_args() -> list[str]:
    """Wheels for the images' Python and platform, never source builds."""
    arch = platform.machine()
    args = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    for minor in (17, 24, 28, 31, 34, 36):  # glibc 2.36 in bookworm runs all of these
        args += ["--platform", f"manylinux_2_{minor}_{arch}"]
    return [*args, "--platform", f"manylinux2014_{arch}"]


def _pip(args: list[str], requirements: list[str], *, timeout: float) -> None:
    command = [sys.executable, "-m", "pip", *args, *_target_args(), "--", *requirements]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise PackageError(f"Resolving {', '.join(requirements)} took longer than {timeout:.0f}s") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.startswith("ERROR")]
        raise PackageError(" ".join(lines[-3:]) or f"pip failed with exit code {done.returncode}")


def install_into(requirements: list[str], target: Path) -> None:
    """Install `requirements` (and what they need) into `target`, as for the images' Python."""
    target.mkdir(parents=True, exist_ok=True)
    if requirements:
        _pip(["install", "--quiet", "--no-compile", "--target", str(target)], requirements, timeout=PIP_TIMEOUT)


def wheel_set(requirements: list[str], *, cache: Path, timeout: float = PIP_TIMEOUT) -> Path:
    """The folder under `cache` holding every wheel `requirements` resolve to, downloaded once.

    Folders are keyed by the normalised requirement list and appear atomically, so concurrent
    runs asking for the same packages share one download and never see a half-filled folder.
    """
    normalised = sorted({r.strip().lower() for r in requirements})
    key = hashlib.sha256(json.dumps(normalised).encode()).hexdigest()[:32]
    final = cache / key
    if final.is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache))
    try:
        _pip(["download", "--quiet", "--dest", str(staging)], normalised, timeout=timeout)
        staging.chmod(0o755)
        for wheel in staging.iterdir():
            wheel.chmod(0o644)
        try:
            os.rename(staging, final)
        except OSError:  # another run finished the same set first
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final
