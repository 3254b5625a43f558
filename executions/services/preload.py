"""Preloaded modules: checking an environment's preload list on its image, once per image and list.

A pooled container's interpreter imports the environment's `preload` modules before its job arrives
(sandbox/bootstrap/hook/sitecustomize.py), so that `import pandas` costs the job nothing. Before any
pooled container gets a preload, the keeper runs one check on the engine: a container of the
environment's shape, with the preload, whose program reports which modules failed to import and how
much memory the interpreter (and its launcher) hold with them loaded. The result is kept on the
environment (`preload_check`), shown on its pages, and decides the pool's shape: pools preload only
a list that imported cleanly on the current image; otherwise they run without a preload (and jobs
import what they need themselves). A check that could not run (the engine failed) is tried again
on a later round of the keeper; one that found errors is not, until the list or the image changes.
"""

from __future__ import annotations

import json
import logging
import secrets
import time

from django.utils import timezone

from executions.models import Environment, iso_utc
from executions.sandbox import ContainerShape, RunSpec, Sandbox

logger = logging.getLogger(__name__)

CHECK_ID_PREFIX = "preload-check-"  # the check's container label; the reaper spares it while young
CHECK_MAX_SECONDS = 300  # no check runs longer (its timeout is the environment's, at most 120 s)
CHECK_TIMEOUT_SECONDS = 120
BASE_RESIDENT_BYTES = 24 * 1024 * 1024  # a pooled container without a preload: launcher and interpreter

# Runs as the check's program, after the preload: what failed (sitecustomize leaves it in the
# environment) and the resident memory of this interpreter and of the launcher, its parent.
CHECK_PROGRAM = """
import json, os

def resident(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0

print(json.dumps({
    "errors": json.loads(os.environ.get("TAKO_PRELOAD_ERRORS") or "{}"),
    "resident_bytes": resident(os.getpid()) + resident(os.getppid()),
}))
"""


def check_id() -> str:
    return f"{CHECK_ID_PREFIX}{int(time.time())}-{secrets.token_hex(4)}"


def is_young_check(execution_id: str) -> bool:
    """A preload check's container that may still be running (the reaper leaves it alone)."""
    if not execution_id.startswith(CHECK_ID_PREFIX):
        return False
    try:
        started = int(execution_id[len(CHECK_ID_PREFIX) :].split("-", 1)[0])
    except ValueError:
        return False
    return time.time() - started < CHECK_MAX_SECONDS


def preload_modules(environment: Environment, image_id: str) -> tuple[str, ...]:
    """The modules pooled containers of `environment` on image `image_id` import ahead: its list,
    once a check on that image found every module importable; () otherwise."""
    check = environment.preload_check or {}
    if not environment.preload or not environment.preload_checked_on(image_id):
        return ()
    if check.get("errors") or check.get("failure"):
        return ()
    return tuple(environment.preload)


def preload_check_due(environment: Environment, image_id: str) -> bool:
    """The environment has a preload list no check has looked at on this image yet."""
    return bool(environment.preload) and not environment.preload_checked_on(image_id)


def resident_bytes(environment: Environment, image_id: str) -> int:
    """What one of its pooled containers holds in memory while it waits (measured with its preload)."""
    if preload_modules(environment, image_id):
        measured = (environment.preload_check or {}).get("resident_bytes")
        if isinstance(measured, int) and measured > 0:
            return measured
    return BASE_RESIDENT_BYTES


def preload_check_run(sandbox: Sandbox, environment: Environment, shape: ContainerShape) -> dict:
    """Check `environment`'s preload in a container of `shape` (its shape, with the preload) now,
    and record what was found on the environment.

    Raises SandboxUnavailable or SandboxError when the engine could not run the check (nothing is
    recorded: the keeper tries again later)."""
    modules = list(environment.preload)
    image_id = shape.image_id
    timeout = min(environment.startup_timeout, CHECK_TIMEOUT_SECONDS)
    spec = RunSpec(
        execution_id=check_id(),
        shape=shape,
        code=CHECK_PROGRAM,
        input_json="{}",
        timeout=30,
        startup_timeout=timeout,
    )
    began = time.monotonic()
    result = sandbox.run(spec)
    check: dict = {
        "image_id": image_id,
        "modules": modules,
        "errors": {},
        "failure": "",
        "resident_bytes": None,
        "checked_at": iso_utc(timezone.now()),
        "seconds": round(time.monotonic() - began, 2),
    }
    report = _report_of(result.stdout) if result.exit_code == 0 else None
    if report is None:
        if result.startup_timed_out:
            why = f"importing them took longer than {timeout} s"
        else:
            tail = " ".join(result.stderr.strip().splitlines()[-3:])[:500]
            why = f"the interpreter ended while importing them (exit code {result.exit_code})" + (
                f": {tail}" if tail else ""
            )
        check["failure"] = f"Preloading {', '.join(modules)} failed: {why}"
    else:
        check["errors"] = {str(k): str(v)[:500] for k, v in report.get("errors", {}).items()}
        if isinstance(report.get("resident_bytes"), int):
            check["resident_bytes"] = report["resident_bytes"]
    Environment.objects.filter(pk=environment.pk, preload=modules).update(preload_check=check)
    environment.preload_check = check
    if check["errors"] or check["failure"]:
        logger.warning("Preload of %s: %s", environment.name, check["failure"] or check["errors"])
    return check


def _report_of(stdout: str) -> dict | None:
    try:
        report = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return report if isinstance(report, dict) and isinstance(report.get("errors"), dict) else None
