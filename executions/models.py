"""Executions, and the environments (job types) they run in."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

JOB_TYPE_NAME_RE = r"^[a-zA-Z0-9_-]+$"
MEMORY_LIMIT_RE = r"^[1-9][0-9]*[kmg]$"


def _iso(value: Any) -> str | None:
    """ISO-8601 UTC with a Z, as the API promises (2026-01-15T10:30:00.123Z)."""
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    requirements = models.JSONField(default=list, blank=True, help_text="pip specifiers baked into the image")
    python_version = models.CharField(max_length=8, default="3.11")
    memory_limit = models.CharField(
        max_length=16,
        default="512m",
        validators=[RegexValidator(MEMORY_LIMIT_RE, "A size such as 512m or 2g")],
    )
    cpu_limit = models.FloatField(default=1.0, validators=[MinValueValidator(0.1), MaxValueValidator(64)])
    timeout = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1), _validate_max_timeout])
    startup_timeout = models.PositiveIntegerField(
        default=60, validators=[MinValueValidator(10), MaxValueValidator(600)]
    )
    network_enabled = models.BooleanField(default=False)
    env_vars = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def image(self) -> str:
        return f"tako-vm-{self.name}:latest"

    def to_dict(self, *, image_exists: bool) -> dict[str, Any]:
        return {
            "name": self.name,
            "requirements": list(self.requirements),
            "python_version": self.python_version,
            "memory_limit": self.memory_limit,
            "cpu_limit": self.cpu_limit,
            "timeout": self.timeout,
            "startup_timeout": self.startup_timeout,
            "network_enabled": self.network_enabled,
            "image": self.image,
            "image_exists": image_exists,
        }


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
    execution_ms = models.PositiveIntegerField(null=True)
    total_ms = models.PositiveIntegerField(null=True)
    resource_usage = models.JSONField(null=True)

    code_hash = models.CharField(max_length=64)
    input_hash = models.CharField(max_length=64)
    job_ref = models.CharField(max_length=200, default="")  # name@sha256:… of the image it ran on
    runtime = models.CharField(max_length=32, default="")
    correlation_id = models.CharField(max_length=128, default="")
    client_ip = models.GenericIPAddressField(null=True)
    idempotency_key = models.CharField(max_length=255, null=True)
    parent_execution = models.ForeignKey("self", null=True, on_delete=models.SET_NULL, related_name="children")
    relationship = models.CharField(max_length=8, null=True)  # rerun | fork

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["job_type", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL

    @property
    def success(self) -> bool:
        return self.status == self.Status.SUCCEEDED

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
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at),
            "duration_ms": self.execution_ms,
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "output": self.output,
            "error": self.error_dict(),
            "timing": {
                "startup_ms": self.startup_ms,
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
                    "resource_usage": self.resource_usage,
                    "code_hash": self.code_hash,
                    "input_hash": self.input_hash,
                    "job_ref": self.job_ref or None,
                    "runtime": self.runtime or None,
                    "parent_execution_id": str(self.parent_execution_id) if self.parent_execution_id else None,
                    "relationship": self.relationship,
                    "stdout_truncated": self.stdout_truncated,
                    "stderr_truncated": self.stderr_truncated,
                    "idempotency_key": self.idempotency_key,
                }
            )
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
