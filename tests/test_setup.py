"""The one set-up step: what it promises is there, a missing piece names the step, and installs
come only from a lock that matches pyproject.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT, SETUP_HINT, require_tool


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


@pytest.mark.docker
def test_the_test_setup_keeps_every_promise() -> None:
    result = run_script("scripts/check-setup.sh", "test")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("setup (test) ok: ")
    for promised in ("docker engine", "image tako-vm-default", "chromium", "compose", "postgresql", "redis"):
        assert promised in line


def test_a_missing_piece_fails_the_check_by_name(tmp_path: Path) -> None:
    result = run_script("scripts/check-setup.sh", "run", env={"VENV": str(tmp_path / "no-venv")})
    assert result.returncode == 1
    assert "INCOMPLETE: missing python deps" in result.stderr


def test_a_tool_setup_did_not_provide_fails_naming_the_setup_step() -> None:
    with pytest.raises(pytest.fail.Exception) as failure:
        require_tool("tako-no-such-tool")
    assert "tako-no-such-tool is not installed" in str(failure.value)
    assert "scripts/setup.sh test" in str(failure.value) and SETUP_HINT in str(failure.value)


def copy_of_the_lock_inputs(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "check_lock.py", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for lock in ("requirements.txt", "requirements-dev.txt"):
        shutil.copy(ROOT / lock, tmp_path)
    return tmp_path


def test_the_committed_locks_match_pyproject() -> None:
    result = run_script("python3", "scripts/check_lock.py")
    assert result.returncode == 0, result.stderr


def test_a_dependency_change_without_a_new_lock_refuses_to_install(tmp_path: Path) -> None:
    copy = copy_of_the_lock_inputs(tmp_path)
    pyproject = copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"pytest>=8,<10"', '"pytest>=8,<11"'))
    result = subprocess.run(["python3", "scripts/check_lock.py"], cwd=copy, capture_output=True, text=True)
    assert result.returncode == 1
    assert "requirements-dev.txt" in result.stderr and "requirements.txt" not in result.stderr.replace("-dev.txt", "")
    assert "make lock" in result.stderr


def test_every_locked_requirement_carries_hashes() -> None:
    for name in ("runtime", "dev"):
        text = (ROOT / ("requirements.txt" if name == "runtime" else f"requirements-{name}.txt")).read_text()
        pins = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
        assert pins and all("==" in pin and pin.rstrip().endswith("\\") for pin in pins), name
        assert "django-q2==1.11." in text  # pinned to its minor: the brokers subclass its internals
