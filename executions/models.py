"""Executions, and the environments (job types) they run in."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

JOB_TYPE_NAME_RE = r"^[a-zA-Z0-9_-]+$"
# A job type as a request names it: `name`, `name@<version tag>` or `name@sha256:<digest, 12+ hex digits>`.
JOB_TYPE_REF_RE = r"^[a-zA-Z0-9_-]+(@(sha256:[0-9a-f]{12,64}|[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}))?$"
MEMORY_LIMIT_RE = r"^[1-9][0-9]*[kmg]$"
ENV_VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A requirement is a distribution name with optional extras and version constraints: no URLs,
# paths, pip options, environment markers or anything a shell or a Dockerfile would interpret.
_VERSION = r"(===|==|!=|~=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
REQUIREMENT_RE = re.compile(
    rf"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(\[[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*\])?(\s*{_VERSION}(\s*,\s*{_VERSION})*)?$"
)
MAX_REQUIREMENTS = 50
MIN_MEMORY_BYTES = 32 * 1024 * 1024


def new_webhook_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def iso_utc(value: Any) -> str | None:
    """ISO-8601 UTC with a Z, as the API promises (2026-01-15T10:30:00.123Z)."""
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def requirement_errors(value: Any) -> list[str]:
    """What is wrong with a list of pip requirements (empty when it is fine)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return ["Requirements must be a list of strings"]
    errors = [f"At most {MAX_REQUIREMENTS} requirements are allowed"] if len(value) > MAX_REQUIREMENTS else []
    for item in value:
        if not REQUIREMENT_RE.match(item.strip()):
            errors.append(
                f"Invalid requirement {item!r}: use a package name with optional extras and versions, "
                "such as pandas or numpy>=1.26 (no URLs, paths, options or markers)"
            )
    return errors


def _validate_requirements(value: Any) -> None:
    errors = requirement_errors(value)
    if errors:
        raise ValidationError(errors)


def memory_bytes(limit: str) -> int:
    number, unit = int(limit[:-1]), limit[-1].lower()
    return number * {"k": 1024, "m": 1024**2, "g": 1024**3}[unit]


def _validate_memory_limit(value: str) -> None:
    if re.match(MEMORY_LIMIT_RE, value) and memory_bytes(value) < MIN_MEMORY_BYTES:
        raise ValidationError("Memory limit must be at least 32m")


def _validate_env_vars(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError("Environment variables must be an object of NAME: value")
    for name, item in value.items():
        if not ENV_VAR_NAME_RE.match(name) or not isinstance(item, str) or "\x00" in item:
            raise ValidationError(
                f"Invalid environment variable {name!r}: names are [A-Za-z_][A-Za-z0-9_]*, values strings"
            )
        if name.startswith("TAKO_"):
            raise ValidationError(f"{name}: names starting with TAKO_ are reserved")


MAX_PRELOAD_MODULES = 20
MODULE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _validate_preload(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("Preload must be a list of module names")
    if len(value) > MAX_PRELOAD_MODULES:
        raise ValidationError(f"At most {MAX_PRELOAD_MODULES} modules may be preloaded")
    for item in value:
        if not MODULE_NAME_RE.match(item) or len(item) > 200:
            raise ValidationError(f"Invalid module name {item!r}: use a dotted name such as matplotlib.pyplot")


def _validate_max_timeout(value: int) -> None:
    if value > settings.TAKO_MAX_TIMEOUT:
        raise ValidationError(f"Timeout cannot exceed the deployment's max_timeout ({settings.TAKO_MAX_TIMEOUT}s)")


class Environment(models.Model):
    """A job type: the image, packages and limits a run gets. The API calls it a job type."""

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(JOB_TYPE_NAME_RE, "Use letters, digits, - and _")],
    )
    requirements = models.JSONField(
        default=list, blank=True, validators=[_validate_requirements], help_text="pip specifiers baked into the image"
    )
    python_version = models.CharField(max_length=8, default="3.11")
    memory_limit = models.CharField(
        max_length=16,
        default="512m",
        validators=[RegexValidator(MEMORY_LIMIT_RE, "A size such as 512m or 2g"), _validate_memory_limit],
    )
    cpu_limit = models.FloatField(default=1.0, validators=[MinValueValidator(0.1), MaxValueValidator(64)])
    timeout = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1), _validate_max_timeout])
    startup_timeout = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(10), MaxValueValidator(600)]
    )
    network_enabled = models.BooleanField(default=False)

    class Runtime(models.TextChoices):
        RUNC = "runc", "runc (Docker's default)"
        RUNSC = "runsc", "runsc (gVisor: a user-space kernel between the program and the host)"

    # Empty: TAKO_DEFAULT_RUNTIME. gVisor (runsc) runs without a network (its runtime is registered
    # with --network=none), so it cannot be combined with network_enabled.
    runtime = models.CharField(max_length=8, choices=Runtime.choices, blank=True, default="")
    env_vars = models.JSONField(default=dict, blank=True, validators=[_validate_env_vars])
    # Empty (null): sized from recent demand (services/pool.py); a number: that many, kept while
    # the environment is busy; 0: no pool.
    pool_size = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        default=0,
        validators=[MaxValueValidator(32)],
        help_text=(
            "Containers kept started ahead of time on each worker host, so jobs skip the start. "
            "Empty: as many as its recent demand wants, the peak of concurrent jobs or of jobs started "
            "within a second (at least 1); 0: none"
        ),
    )
    preload = models.JSONField(
        default=list,
        blank=True,
        validators=[_validate_preload],
        help_text='Modules the warm pool\'s interpreters import before a job arrives, e.g. ["pandas"]',
    )
    # What the last check of `preload` on this environment's image found (services/preload.py):
    # {"image_id", "modules", "errors": {module: message}, "failure", "resident_bytes", "checked_at"}.
    preload_check = models.JSONField(default=dict, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class BuildStatus(models.TextChoices):
        NONE = "none"
        QUEUED = "queued"  # a worker will build it (services.environment_build_request)
        BUILDING = "building"
        BUILT = "built"
        FAILED = "failed"

    build_status = models.CharField(max_length=16, choices=BuildStatus.choices, default=BuildStatus.NONE)
    build_error = models.TextField(blank=True, default="")
    build_started_at = models.DateTimeField(null=True, blank=True)
    image_digest = models.CharField(max_length=80, blank=True, default="")  # sha256:… of the built image
    image_size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    built_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    BUILD_PENDING = (BuildStatus.QUEUED, BuildStatus.BUILDING)

    @property
    def effective_runtime(self) -> str:
        """The runtime its containers run under: its own, else the deployment's default."""
        return self.runtime or str(settings.TAKO_DEFAULT_RUNTIME)

    def clean(self) -> None:
        super().clean()
        if self.effective_runtime == self.Runtime.RUNSC and self.network_enabled:
            raise ValidationError({"network_enabled": "gVisor (runsc) environments run without a network"})

    @property
    def image(self) -> str:
        return f"tako-vm-{self.name}:latest"

    @property
    def image_ref(self) -> str | None:
        """`name@sha256:…` of the image the last build recorded: the stored truth pages and the
        API read, so that no request asks Docker. If the image is removed behind our back, the next
        run fails naming the build to run, and that build corrects this."""
        return f"tako-vm-{self.name}@{self.image_digest}" if self.image_digest else None

    @property
    def wants_pool(self) -> bool:
        """Jobs may look for a pooled container: a size is set, or left to demand."""
        return self.pool_size is None or self.pool_size > 0

    def preload_checked_on(self, image_id: str) -> bool:
        """The last preload check looked at this preload list on image `image_id`."""
        check = self.preload_check or {}
        return check.get("modules") == list(self.preload) and check.get("image_id") == image_id

    @property
    def preload_status(self) -> dict[str, Any]:
        """The preload as users see it: whether the modules are imported ahead, and why not."""
        check, modules = self.preload_check or {}, list(self.preload)
        if not modules:
            return {"state": "none", "modules": [], "errors": {}, "resident_bytes": None, "checked_at": None}
        # (An image no build recorded, as in a test's engine: the check's own image counts.)
        current = self.preload_checked_on(self.image_digest or str(check.get("image_id")))
        if not current:
            state = "unchecked"
        elif check.get("errors") or check.get("failure"):
            state = "failed"
        else:
            state = "ok"
        return {
            "state": state,
            "modules": modules,
            "errors": dict(check.get("errors") or {}) if current else {},
            "failure": (check.get("failure") or None) if current else None,
            "resident_bytes": check.get("resident_bytes") if current else None,
            "checked_at": check.get("checked_at") if current else None,
        }

    @property
    def build_pending(self) -> bool:
        return self.build_status in self.BUILD_PENDING

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "requirements": list(self.requirements),
            "python_version": self.python_version,
            "memory_limit": self.memory_limit,
            "cpu_limit": self.cpu_limit,
            "timeout": self.timeout,
            "startup_timeout": self.startup_timeout,
            "network_enabled": self.network_enabled,
            "runtime": self.effective_runtime,
            "pool_size": self.pool_size,
            "preload": list(self.preload),
            "preload_status": self.preload_status,
            "image": self.image,
            "image_exists": self.image_ref is not None,
            "image_ref": self.image_ref,
            "image_digest": self.image_digest or None,
            "built_at": iso_utc(self.built_at),
            "build_status": self.build_status,
            "build_error": self.build_error or None,
        }


VERSION_TAG_RE = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"


class EnvironmentVersion(models.Model):
    """One build of a job type's image (Tako VM 0.3.0's versions): its tag (given at the build, or
    v1, v2, … in order) and the image's digest. `job_type: "name@<tag>"` or `"name@sha256:<digest>"`
    runs on that image; the image is kept under the tag, so a later build does not remove it."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="versions")
    tag = models.CharField(max_length=64, validators=[RegexValidator(VERSION_TAG_RE, "Letters, digits, . _ + -")])
    digest = models.CharField(max_length=80)  # sha256:… of the image
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    built_at = models.DateTimeField(default=timezone.now)
    built_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["-built_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["environment", "tag"], name="one_version_per_tag")]

    def __str__(self) -> str:
        return f"{self.environment.name}@{self.tag}"

    @property
    def image_ref(self) -> str:
        return f"tako-vm-{self.environment.name}@{self.digest}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "digest": self.digest,
            "image_ref": self.image_ref,
            "size_bytes": self.size_bytes,
            "built_at": iso_utc(self.built_at),
        }


class Batch(models.Model):
    """Jobs submitted together (POST /execute/batch): one per input, the same code and settings,
    admitted as a whole. Its members are the executions pointing at it, in `batch_index` order."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="batches"
    )
    client_ip = models.GenericIPAddressField(null=True)
    correlation_id = models.CharField(max_length=128, default="")
    job_type = models.CharField(max_length=64)
    total = models.PositiveIntegerField()

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return f"batch {self.id} ({self.total} jobs)"


class Execution(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        TIMEOUT = "timeout"
        OOM = "oom"
        CANCELLED = "cancelled"

    TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.TIMEOUT, Status.OOM, Status.CANCELLED})

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    job_type = models.CharField(max_length=64, db_index=True)
    code = models.TextField()
    input_data = models.JSONField(default=dict)
    timeout = models.PositiveIntegerField()
    startup_timeout = models.PositiveIntegerField(default=60)
    requirements = models.JSONField(default=list)

    exit_code = models.IntegerField(null=True)
    stdout = models.TextField(default="")
    stderr = models.TextField(default="")
    stdout_truncated = models.BooleanField(default=False)
    stderr_truncated = models.BooleanField(default=False)
    output = models.JSONField(null=True)
    error_type = models.CharField(max_length=32, null=True, db_index=True)
    error_message = models.TextField(null=True)
    error_phase = models.CharField(max_length=16, null=True)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True)
    ended_at = models.DateTimeField(null=True)
    startup_ms = models.PositiveIntegerField(null=True)
    dep_install_ms = models.PositiveIntegerField(null=True)
    execution_ms = models.PositiveIntegerField(null=True)
    total_ms = models.PositiveIntegerField(null=True)
    resource_usage = models.JSONField(null=True)
    # The program's display() outputs, in order (sandbox.RunResult.displays): {"mime", "data"} or
    # {"mime": "image/png", "artifact": "figure-N.png"}
    displays = models.JSONField(default=list)

    code_hash = models.CharField(max_length=64)
    input_hash = models.CharField(max_length=64)
    job_ref = models.CharField(max_length=200, default="")  # name@sha256:… of the image it ran on
    runtime = models.CharField(max_length=32, default="")
    # Ran in a container of the warm pool (True), or cold because none was ready (False); None
    # when the environment keeps no pool or the run installs its own packages.
    warm_start = models.BooleanField(null=True, default=None)
    # When it was last handed to the worker clusters' queue (None: run by the web process itself).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Since when it has waited for an engine to work again (every engine failing; None: never).
    # It waits up to TAKO_OUTAGE_GRACE, queued, before it ends service_unavailable.
    engine_wait_since = models.DateTimeField(null=True, blank=True)
    correlation_id = models.CharField(max_length=128, default="")
    client_ip = models.GenericIPAddressField(null=True)
    idempotency_key = models.CharField(max_length=255, null=True)
    request_hash = models.CharField(max_length=64, default="")  # what idempotency compares
    is_async = models.BooleanField(default=False)
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=255, default="")  # the host running it
    # Fair sharing (services/lifecycle.py): whose job it is (key:<id>, user:<id> or ip:<address>)
    # and that caller's weight; what it takes of its host's budget while it runs; quick work (sync,
    # or a declared timeout within TAKO_QUICK_TIMEOUT and no per-run requirements) may use the
    # share of the budget that long jobs leave free.
    caller = models.CharField(max_length=80, default="")
    caller_weight = models.PositiveSmallIntegerField(default=1)
    memory_bytes = models.BigIntegerField(default=0)
    cpus = models.FloatField(default=0)
    quick = models.BooleanField(default=True)
    container_started_at = models.DateTimeField(null=True)
    heartbeat_at = models.DateTimeField(null=True)
    attempts = models.JSONField(default=list)  # one entry per failed try of a transient engine fault
    parent_execution = models.ForeignKey("self", null=True, on_delete=models.SET_NULL, related_name="children")
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="executions"
    )
    relationship = models.CharField(max_length=8, null=True)  # rerun | fork
    # POSTed the record when the job ends (services/webhooks.py); "" for none.
    webhook_url = models.CharField(max_length=2048, blank=True, default="")
    # The batch it was submitted in (POST /execute/batch), and its input's place there (0, 1, …).
    batch = models.ForeignKey(Batch, null=True, blank=True, on_delete=models.SET_NULL, related_name="executions")
    batch_index = models.PositiveIntegerField(null=True, blank=True)
    # The version of its job type asked for (job_type "name@tag" or "name@sha256:…"); None: the latest image.
    job_version = models.ForeignKey(
        EnvironmentVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="executions"
    )

    class Meta:
        ordering = ["-created_at"]
        # Every list the API and pages show: newest first, optionally by status, job type or owner.
        indexes = [
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["job_type", "-created_at"]),
            models.Index(fields=["submitted_by", "-created_at"], name="executions_by_owner"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL

    @property
    def success(self) -> bool:
        return self.status == self.Status.SUCCEEDED

    def to_job_status(self) -> dict[str, Any]:
        return {
            "job_id": str(self.id),
            "status": self.status,
            "created_at": iso_utc(self.created_at),
            "started_at": iso_utc(self.started_at),
            "ended_at": iso_utc(self.ended_at),
        }

    def error_dict(self) -> dict[str, Any] | None:
        if self.error_type is None:
            return None
        return {"type": self.error_type, "message": self.error_message, "phase": self.error_phase}

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        """The execution record of docs/API.md; `full` adds the view=full fields."""
        record: dict[str, Any] = {
            "execution_id": str(self.id),
            "status": self.status,
            "job_type": self.job_type,
            "created_at": iso_utc(self.created_at),
            "started_at": iso_utc(self.started_at),
            "ended_at": iso_utc(self.ended_at),
            "duration_ms": self.execution_ms,
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "output": self.output,
            "error": self.error_dict(),
            "timing": {
                "startup_ms": self.startup_ms,
                "dep_install_ms": self.dep_install_ms,
                "execution_ms": self.execution_ms,
                "total_ms": self.total_ms,
                "phase_at_exit": self.status,
            },
            "correlation_id": self.correlation_id,
        }
        if full:
            record.update(
                {
                    "artifacts": [a.to_dict() for a in self.artifacts.all()],
                    "files": [f.to_dict() for f in self.input_files.all()],
                    "displays": self.displays,
                    "resource_usage": self.resource_usage,
                    "code_hash": self.code_hash,
                    "input_hash": self.input_hash,
                    "job_ref": self.job_ref or None,
                    "runtime": self.runtime or None,
                    "warm_start": self.warm_start,
                    "parent_execution_id": str(self.parent_execution_id) if self.parent_execution_id else None,
                    "relationship": self.relationship,
                    "stdout_truncated": self.stdout_truncated,
                    "stderr_truncated": self.stderr_truncated,
                    "idempotency_key": self.idempotency_key,
                    "attempts": self.attempts,
                }
            )
            if self.job_version_id is not None:
                record["job_version"] = self.job_version.tag if self.job_version else None
        return record

    def to_sync_response(self) -> dict[str, Any]:
        """The body of POST /execute: Tako VM's ExecuteResponse plus error_type and execution_id."""
        return {
            "success": self.success,
            "output": self.output,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "exit_code": self.exit_code,
            "error": self.error_message,
            "error_type": self.error_type,
            "execution_time": round((self.total_ms or 0) / 1000, 3),
            "job_type": self.job_type,
            "execution_id": str(self.id),
            "runtime": self.runtime or None,
            "displays": self.displays,
        }


class Artifact(models.Model):
    """A file the program left in /output (other than result.json), kept on disk under DATA_DIR."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="artifacts")
    name = models.CharField(max_length=255)
    size_bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    content_type = models.CharField(max_length=100)
    path = models.CharField(max_length=500)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["execution", "name"], name="unique_artifact_name")]

    def __str__(self) -> str:
        return self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "content_type": self.content_type,
        }


class InputFile(models.Model):
    """A file the request sent (`files`), written read-only at /input/<path> for the run. Its
    content is stored once by sha256 under DATA_DIR/inputs (services/input_files.py), so a rerun
    or fork shares it with its parent."""

    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="input_files")
    path = models.CharField(max_length=1000)
    size_bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)

    class Meta:
        ordering = ["path"]
        constraints = [models.UniqueConstraint(fields=["execution", "path"], name="unique_input_file_path")]

    def __str__(self) -> str:
        return self.path

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size_bytes": self.size_bytes, "sha256": self.sha256}


class Lock(models.Model):
    """A named row to lock with select_for_update (serialises claims of the worker budget)."""

    name = models.CharField(max_length=64, primary_key=True)

    def __str__(self) -> str:
        return self.name


class CircuitBreaker(models.Model):
    """The shared state of the breaker around one Docker engine (see executions/resilience.py)."""

    class State(models.TextChoices):
        CLOSED = "closed"
        OPEN = "open"
        HALF_OPEN = "half_open"

    name = models.CharField(max_length=200, primary_key=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.CLOSED)
    # The runtimes this engine can start containers with, as its worker host last reported them.
    runtimes = models.JSONField(default=list, blank=True)
    failure_count = models.PositiveIntegerField(default=0)
    success_count = models.PositiveIntegerField(default=0)
    last_failure = models.TextField(blank=True, default="")
    last_failure_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    probe_started_at = models.DateTimeField(null=True, blank=True)
    seen_at = models.DateTimeField(null=True, blank=True)  # its worker host's keeper, lately

    def __str__(self) -> str:
        return f"{self.name}: {self.state}"


class DeadLetter(models.Model):
    """A job that ended in internal_error or service_unavailable after its retries, kept for triage."""

    execution = models.ForeignKey(Execution, null=True, on_delete=models.SET_NULL, related_name="dead_letters")
    job_data = models.JSONField()  # code, input_data, job_type, timeout (and the rest needed to requeue)
    error_type = models.CharField(max_length=32, db_index=True)
    error_message = models.TextField()
    retry_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    client_ip = models.GenericIPAddressField(null=True)
    correlation_id = models.CharField(max_length=128, default="")
    requeued_at = models.DateTimeField(null=True)
    requeued_by = models.CharField(max_length=150, default="")
    requeued_execution = models.ForeignKey(
        Execution, null=True, on_delete=models.SET_NULL, related_name="requeued_from"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="dlq_newest"),
            models.Index(fields=["error_type", "-created_at", "-id"], name="dlq_by_type"),
        ]

    def __str__(self) -> str:
        return f"DLQ {self.pk} ({self.error_type})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.pk,
            "job_id": str(self.execution_id) if self.execution_id else None,
            "job_data": self.job_data,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "retry_count": self.retry_count,
            "created_at": iso_utc(self.created_at),
            "client_ip": self.client_ip,
            "correlation_id": self.correlation_id,
            "requeued_at": iso_utc(self.requeued_at),
            "requeued_by": self.requeued_by or None,
            "requeued_job_id": str(self.requeued_execution_id) if self.requeued_execution_id else None,
        }


class ApiKey(models.Model):
    """A key for scripts. Only its SHA-256 is stored; the key itself is shown once, at creation."""

    class Scope(models.TextChoices):
        EXECUTE = "execute"  # run code, read one's own jobs
        ADMIN = "admin"  # everything: all jobs, the DLQ, builds, metrics

    name = models.CharField(max_length=100)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.EXECUTE)
    prefix = models.CharField(max_length=16, editable=False)  # shown to tell keys apart
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Its share of the workers when callers' jobs wait together: a key of weight 2 gets twice the
    # running jobs of a weight-1 caller (services/lifecycle.py).
    weight = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(100)], help_text="Share of the workers (1-100)"
    )
    # Signs the webhooks of the jobs this key submits (HMAC-SHA256). Kept in clear, as a signer
    # must; shown once when made or rotated, never listed.
    webhook_secret = models.CharField(max_length=64, default=new_webhook_secret, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="After this, the key is refused (401)")
    # Rotation: the secret it had before its last rotation still works until previous_valid_until.
    previous_key_hash = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)
    previous_valid_until = models.DateTimeField(null=True, blank=True, editable=False)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests a minute for this key (empty: TAKO_RATE_LIMIT_PER_MINUTE; 0: none)"
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…, {self.scope})"

    @staticmethod
    def hash(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def issue(cls, *, name: str, owner: Any, scope: str = Scope.EXECUTE) -> tuple[ApiKey, str]:
        """A new key; returns it with the secret, which is never stored."""
        secret = f"tako_{secrets.token_urlsafe(32)}"
        key = cls.objects.create(name=name, owner=owner, scope=scope, prefix=secret[:12], key_hash=cls.hash(secret))
        return key, secret

    def rotate(self, *, grace: timedelta) -> str:
        """A new secret for the key; the old one keeps working for `grace`. Returns the new one (shown once)."""
        secret = f"tako_{secrets.token_urlsafe(32)}"
        now = timezone.now()
        self.previous_key_hash, self.previous_valid_until = self.key_hash, now + grace
        self.key_hash, self.prefix, self.rotated_at = self.hash(secret), secret[:12], now
        self.save(update_fields=["previous_key_hash", "previous_valid_until", "key_hash", "prefix", "rotated_at"])
        return secret

    def rotate_webhook_secret(self) -> str:
        """A new webhook secret, effective for every delivery from now on; returns it (shown once)."""
        self.webhook_secret = new_webhook_secret()
        self.save(update_fields=["webhook_secret"])
        return self.webhook_secret


class WebhookDelivery(models.Model):
    """The webhook of one job (`Execution.webhook_url`): made at admission, queued when the job
    ends, tried until a 2xx or the last attempt (services/webhooks.py). Its id is the
    X-Tako-Delivery header, the same on every attempt so a receiver can drop repeats."""

    class State(models.TextChoices):
        WAITING = "waiting"  # the job has not ended
        QUEUED = "queued"  # a task will make the next attempt
        SENDING = "sending"  # a task is making it
        RETRYING = "retrying"  # the next attempt is due at next_attempt_at
        DELIVERED = "delivered"
        FAILED = "failed"  # every attempt failed, or the target was refused

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    execution = models.OneToOneField(Execution, on_delete=models.CASCADE, related_name="webhook")
    # Whose secret signs it: the submitting key's, or (keyed=False) the deployment's TAKO_WEBHOOK_SECRET.
    keyed = models.BooleanField(default=False)
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="webhooks")
    state = models.CharField(max_length=16, choices=State.choices, default=State.WAITING)
    attempts = models.PositiveSmallIntegerField(default=0)  # made so far
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    state_changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="webhooks_due")]

    def __str__(self) -> str:
        return f"webhook {self.pk} ({self.state})"


class WebhookAttempt(models.Model):
    """One POST of a webhook and how it went: the receiver's status, or why there was none."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempt = models.PositiveSmallIntegerField()  # 1, 2, …
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")  # "" when the receiver answered 2xx
    at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["delivery", "attempt"]
        constraints = [models.UniqueConstraint(fields=["delivery", "attempt"], name="one_row_per_attempt")]

    def __str__(self) -> str:
        return f"attempt {self.attempt} of {self.delivery_id}"

    @property
    def ok(self) -> bool:
        return not self.error

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "status_code": self.status_code,
            "error": self.error or None,
            "at": iso_utc(self.at),
        }


class PoolState(models.Model):
    """One environment's warm pool on one worker host, as its keeper last saw it (for /pool/stats,
    /health and the operations page, which may run on another machine)."""

    engine = models.CharField(max_length=200)  # the worker host whose Docker engine holds the pool
    environment = models.CharField(max_length=64)
    target = models.PositiveSmallIntegerField(default=0)
    ready = models.PositiveSmallIntegerField(default=0)
    in_use = models.PositiveSmallIntegerField(default=0)
    starting = models.PositiveSmallIntegerField(default=0)
    # Jobs since this keeper started that got a pooled container, or wanted one and started cold
    # (counted by the runs as they end: no scan of the executions).
    hits = models.PositiveBigIntegerField(default=0)
    misses = models.PositiveBigIntegerField(default=0)
    resident_bytes = models.PositiveBigIntegerField(default=0)  # held by its ready containers (preloads included)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["engine", "environment"], name="one_pool_per_engine")]

    def __str__(self) -> str:
        return f"{self.environment} on {self.engine}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "ready": self.ready,
            "in_use": self.in_use,
            "starting": self.starting,
            "hits": self.hits,
            "misses": self.misses,
            "resident_bytes": self.resident_bytes,
        }


class ProcessBeat(models.Model):
    """A long-running process of a host says it is alive: the web server, a worker cluster, a pool
    keeper. What /health and the operations page show of a process comes from here, so a process
    that stopped beating is shown as gone, never with its last numbers."""

    class Role(models.TextChoices):
        WEB = "web"
        WORKER = "worker"
        POOL = "pool"

    host = models.CharField(max_length=255)
    role = models.CharField(max_length=16, choices=Role.choices)
    pid = models.PositiveIntegerField()
    engine = models.CharField(max_length=200, blank=True, default="")  # the Docker engine it drives
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "role", "pid"], name="one_beat_per_process")]

    def __str__(self) -> str:
        return f"{self.role} {self.pid} on {self.host}"


class AuditEvent(models.Model):
    """Who did what to the service, when: every admin action (services/audit.py records them)."""

    at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=150)  # a user name, `key:<prefix>` or `api <address>`
    action = models.CharField(max_length=64)  # dlq.requeue, environment.build, login.failed, …
    target = models.CharField(max_length=255, blank=True, default="")  # what it was done to
    detail = models.JSONField(default=dict, blank=True)
    correlation_id = models.CharField(max_length=128, blank=True, default="")
    client_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["-at", "-id"], name="audit_newest"),
            models.Index(fields=["action", "-at"], name="audit_by_action"),
            models.Index(fields=["actor", "-at"], name="audit_by_actor"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.pk,
            "at": iso_utc(self.at),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "detail": self.detail,
            "correlation_id": self.correlation_id,
            "client_ip": self.client_ip,
        }


class RateCounter(models.Model):
    """Requests of one caller (a key, user or address) in one minute, shared by every process and
    host (services/limits.py counts with one atomic upsert; without Redis, this is the store)."""

    key = models.CharField(max_length=100)
    window = models.BigIntegerField()  # minutes since the epoch
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "window"], name="one_counter_per_minute")]

    def __str__(self) -> str:
        return f"{self.key} @ {self.window}: {self.count}"
