"""The OpenAPI 3.1 document of the JSON API: the one description of its contract.

Served at /openapi.json and rendered at /docs. tests/test_openapi.py checks that every API route
is documented and every response the tests see matches its schema, so it cannot drift.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from executions.sandbox.classify import ERROR_TYPES


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_INT = {"type": ["integer", "null"]}
STATUSES = ["queued", "running", "succeeded", "failed", "timeout", "oom", "cancelled"]

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["detail", "correlation_id"],
        "properties": {
            "detail": {"type": "string", "description": "One readable sentence saying what is wrong"},
            "correlation_id": {"type": "string"},
            "errors": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
                "description": "422 only: every failed field with its messages",
            },
        },
    },
    "ExecuteRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["code"],
        "properties": {
            "code": {"type": "string", "minLength": 1, "maxLength": 100000},
            "input_data": {"type": "object", "default": {}, "description": "At most 1 MB serialized"},
            "timeout": {"type": "integer", "minimum": 1, "maximum": 300},
            "job_type": {"type": "string", "pattern": "^[a-zA-Z0-9_-]+$", "default": "default"},
            "startup_timeout": {"type": "integer", "minimum": 10, "maximum": 600, "default": 60},
            "requirements": {"type": "array", "items": {"type": "string"}, "maxItems": 50},
            "idempotency_key": {
                "type": "string",
                "pattern": "^[A-Za-z0-9_-]{8,255}$",
                "description": "The caller's own key: a retry with the same payload gets the first job (sync: "
                "its result) and runs nothing; another payload is a 409",
            },
        },
    },
    "ExecuteResponse": {
        "type": "object",
        "additionalProperties": False,
        "required": [
            "success",
            "output",
            "stdout",
            "stderr",
            "exit_code",
            "error",
            "execution_time",
            "job_type",
        ],
        "properties": {
            "success": {"type": "boolean"},
            "output": {"description": "The parsed /output/result.json, or null"},
            "stdout": {"type": "string"},
            "stderr": {"type": "string"},
            "exit_code": NULLABLE_INT,
            "error": NULLABLE_STRING,
            "error_type": {"enum": [*ERROR_TYPES, None]},
            "execution_time": {"type": "number", "description": "Seconds, request to result"},
            "job_type": {"type": "string"},
            "execution_id": {"type": "string", "format": "uuid"},
            "runtime": NULLABLE_STRING,
        },
    },
    "ErrorInfo": {
        "type": ["object", "null"],
        "required": ["type", "message", "phase"],
        "properties": {
            "type": {"enum": list(ERROR_TYPES)},
            "message": NULLABLE_STRING,
            "phase": {"enum": ["startup", "execution", "output", None]},
        },
    },
    "ExecutionRecord": {
        "type": "object",
        "required": [
            "execution_id",
            "status",
            "job_type",
            "created_at",
            "started_at",
            "ended_at",
            "duration_ms",
            "exit_code",
            "stdout",
            "stderr",
            "output",
            "error",
            "timing",
            "correlation_id",
        ],
        "properties": {
            "execution_id": {"type": "string", "format": "uuid"},
            "status": {"enum": STATUSES},
            "job_type": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "ended_at": {"type": ["string", "null"], "format": "date-time"},
            "duration_ms": NULLABLE_INT,
            "exit_code": NULLABLE_INT,
            "stdout": {"type": "string"},
            "stderr": {"type": "string"},
            "output": {},
            "error": _ref("ErrorInfo"),
            "timing": {
                "type": "object",
                "required": ["startup_ms", "execution_ms", "total_ms", "phase_at_exit"],
                "properties": {
                    "startup_ms": NULLABLE_INT,
                    "dep_install_ms": NULLABLE_INT,
                    "execution_ms": NULLABLE_INT,
                    "total_ms": NULLABLE_INT,
                    "phase_at_exit": {"enum": STATUSES},
                },
            },
            "correlation_id": {"type": "string"},
            "artifacts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "size_bytes", "sha256", "content_type"],
                    "properties": {
                        "name": {"type": "string"},
                        "size_bytes": {"type": "integer"},
                        "sha256": {"type": "string"},
                        "content_type": {"type": "string"},
                    },
                },
            },
            "resource_usage": {
                "type": ["object", "null"],
                "properties": {
                    "max_rss_mb": {"type": "number"},
                    "cpu_time_ms": {"type": "integer"},
                    "wall_time_ms": {"type": "integer"},
                },
            },
            "code_hash": {"type": "string"},
            "input_hash": {"type": "string"},
            "job_ref": NULLABLE_STRING,
            "runtime": NULLABLE_STRING,
            "warm_start": {
                "type": ["boolean", "null"],
                "description": "true: ran in a container of the warm pool; false: none was ready, started cold; "
                "null: its environment keeps no pool, or it installed its own packages",
            },
            "parent_execution_id": NULLABLE_STRING,
            "relationship": {"enum": ["rerun", "fork", None]},
            "stdout_truncated": {"type": "boolean"},
            "stderr_truncated": {"type": "boolean"},
            "idempotency_key": NULLABLE_STRING,
            "attempts": {
                "type": "array",
                "description": "Tries that failed on a transient Docker fault (then retried)",
                "items": {
                    "type": "object",
                    "required": ["attempt", "error", "at"],
                    "properties": {
                        "attempt": {"type": "integer"},
                        "error": {"type": "string"},
                        "at": {"type": "string"},
                    },
                },
            },
        },
    },
    "ExecutionPage": {
        "type": "object",
        "additionalProperties": False,
        "required": ["items", "limit", "offset", "has_more", "count"],
        "properties": {
            "items": {"type": "array", "items": _ref("ExecutionRecord")},
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
            "offset": {"type": "integer", "minimum": 0},
            "has_more": {"type": "boolean"},
            "count": {"type": "integer", "description": "Number of items in this page"},
        },
    },
    "JobType": {
        "type": "object",
        "required": [
            "name",
            "requirements",
            "python_version",
            "memory_limit",
            "cpu_limit",
            "timeout",
            "network_enabled",
            "image_exists",
        ],
        "properties": {
            "name": {"type": "string"},
            "requirements": {"type": "array", "items": {"type": "string"}},
            "python_version": {"type": "string"},
            "memory_limit": {"type": "string"},
            "cpu_limit": {"type": "number"},
            "timeout": {"type": "integer"},
            "startup_timeout": {"type": "integer"},
            "network_enabled": {"type": "boolean"},
            "image": {"type": "string"},
            "image_exists": {"type": "boolean"},
            "image_digest": NULLABLE_STRING,
            "built_at": {"type": ["string", "null"], "format": "date-time"},
            "build_status": {"enum": ["none", "building", "built", "failed"]},
            "build_error": NULLABLE_STRING,
        },
    },
    "BuildResult": {
        "type": "object",
        "required": ["status", "job_type", "version", "digest", "image_ref"],
        "properties": {
            "status": {"const": "built"},
            "job_type": {"type": "string"},
            "version": {"type": "string", "description": "name@short digest"},
            "digest": {"type": "string"},
            "image_ref": {"type": "string"},
            "rebuilt": {"type": "boolean", "description": "false when the image was already up to date"},
            "seconds": {"type": "number"},
            "size_bytes": {"type": "integer"},
        },
    },
    "JobSubmitted": {
        "type": "object",
        "required": ["job_id", "status"],
        "properties": {
            "job_id": {"type": "string", "format": "uuid"},
            "status": {"enum": STATUSES},
            "parent_execution_id": {"type": "string"},
            "relationship": {"enum": ["rerun", "fork"]},
        },
    },
    "JobStatus": {
        "type": "object",
        "required": ["job_id", "status", "created_at", "started_at"],
        "properties": {
            "job_id": {"type": "string", "format": "uuid"},
            "status": {"enum": STATUSES},
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "ended_at": {"type": ["string", "null"], "format": "date-time"},
            "queue_position": {"type": ["integer", "null"], "description": "1 = next to start"},
        },
    },
    "JobInProgress": {
        "type": "object",
        "required": ["job_id", "status", "message", "queue_position"],
        "properties": {
            "job_id": {"type": "string", "format": "uuid"},
            "status": {"enum": ["queued", "running"]},
            "message": {"const": "Job still in progress"},
            "queue_position": {"type": ["integer", "null"]},
        },
    },
    "Cancelled": {
        "type": "object",
        "required": ["status", "job_id"],
        "properties": {
            "status": {"const": "cancelled"},
            "job_id": {"type": "string", "format": "uuid"},
            "job_status": {"enum": STATUSES, "description": "the record's status when answering"},
        },
    },
    "IdempotencyConflict": {
        "type": "object",
        "required": ["detail", "error", "existing_job_id", "correlation_id"],
        "properties": {
            "detail": {"type": "string"},
            "error": {"type": "string"},
            "existing_job_id": {"type": "string", "format": "uuid"},
            "correlation_id": {"type": "string"},
        },
    },
    "WaitTimeout": {
        "type": "object",
        "required": ["detail", "error", "correlation_id"],
        "properties": {
            "detail": {"const": "Timeout waiting for job"},
            "error": {"const": "Timeout waiting for job"},
            "job_id": {"type": "string"},
            "correlation_id": {"type": "string"},
        },
    },
    "QueueStats": {
        "type": "object",
        "required": ["pending", "running", "max_workers", "max_queue_size"],
        "properties": {
            "pending": {"type": "integer"},
            "running": {"type": "integer"},
            "max_workers": {"type": "integer"},
            "max_queue_size": {"type": "integer"},
        },
    },
    "WarmPool": {
        "type": "object",
        "description": "Per environment: its warm pool summed over the worker hosts whose keeper is alive, "
        "and the jobs since each keeper started that got a pooled container (hits) or wanted one (misses).",
        "additionalProperties": {
            "type": "object",
            "required": ["target", "ready", "in_use", "starting", "hits", "misses"],
            "properties": {
                name: {"type": "integer", "minimum": 0}
                for name in ("target", "ready", "in_use", "starting", "hits", "misses")
            },
        },
    },
    "PoolStats": {
        "allOf": [
            _ref("QueueStats"),
            {"type": "object", "required": ["warm_pool"], "properties": {"warm_pool": _ref("WarmPool")}},
        ]
    },
    "DeriveRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "code": {"type": "string", "description": "fork only, required there"},
            "job_type": {"type": "string"},
            "timeout": {"type": "integer", "minimum": 1, "maximum": 300},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "docker_available", "circuit_breaker", "version", "queue_stats", "warm_pool"],
        "properties": {
            "status": {"enum": ["healthy", "degraded"]},
            "docker_available": {"type": "boolean"},
            "circuit_breaker": {
                "type": "object",
                "required": ["state", "failure_count", "success_count", "last_failure"],
                "properties": {
                    "state": {"enum": ["closed", "open", "half_open"]},
                    "failure_count": {"type": "integer"},
                    "success_count": {"type": "integer"},
                    "last_failure": NULLABLE_STRING,
                    "last_failure_at": {"type": ["string", "null"], "format": "date-time"},
                    "opened_at": {"type": ["string", "null"], "format": "date-time"},
                },
            },
            "version": {"type": "string"},
            "queue_stats": _ref("QueueStats"),
            "warm_pool": _ref("WarmPool"),
            "engines": {
                "type": "array",
                "description": "Every Docker engine in use (one per worker host), each with its own breaker",
                "items": {"type": "object", "required": ["name", "state"], "properties": {"name": {"type": "string"}}},
            },
        },
    },
    "Readiness": {
        "type": "object",
        "additionalProperties": False,
        "required": ["ready", "checks"],
        "properties": {
            "ready": {"type": "boolean", "description": "True only when every check passed"},
            "checks": {
                "type": "object",
                "additionalProperties": False,
                "required": ["database", "migrations", "queue", "engine"],
                "properties": {
                    name: {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["ok", "detail"],
                        "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}},
                        "description": description,
                    }
                    for name, description in (
                        ("database", "The database answers"),
                        ("migrations", "Every migration is applied"),
                        ("queue", "The job queue (Redis, or the database's queue table) answers"),
                        ("engine", "This host's Docker engine answers, or (web-only) a worker's engine works"),
                    )
                },
            },
        },
    },
    "DeadLetter": {
        "type": "object",
        "required": [
            "id",
            "job_id",
            "job_data",
            "error_type",
            "error_message",
            "retry_count",
            "created_at",
            "client_ip",
            "correlation_id",
        ],
        "properties": {
            "id": {"type": "integer"},
            "job_id": NULLABLE_STRING,
            "job_data": {
                "type": "object",
                "required": ["code", "input_data", "job_type", "timeout"],
                "properties": {
                    "code": {"type": "string"},
                    "input_data": {"type": "object"},
                    "job_type": {"type": "string"},
                    "timeout": {"type": "integer"},
                },
            },
            "error_type": {"enum": ["internal_error", "service_unavailable"]},
            "error_message": {"type": "string"},
            "retry_count": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "client_ip": NULLABLE_STRING,
            "correlation_id": {"type": "string"},
            "requeued_at": {"type": ["string", "null"], "format": "date-time"},
            "requeued_by": NULLABLE_STRING,
            "requeued_job_id": NULLABLE_STRING,
        },
    },
    "DeadLetterPage": {
        "type": "object",
        "required": ["items", "limit", "offset", "has_more", "count"],
        "properties": {
            "items": {"type": "array", "items": _ref("DeadLetter")},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "has_more": {"type": "boolean"},
            "count": {"type": "integer"},
        },
    },
    "DeadLetterStats": {
        "type": "object",
        "required": ["total", "by_error_type"],
        "properties": {
            "total": {"type": "integer"},
            "by_error_type": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
    "ServiceUnavailable": {
        "type": "object",
        "required": ["detail", "correlation_id", "error_type"],
        "properties": {
            "detail": {"type": "string"},
            "correlation_id": {"type": "string"},
            "error_type": {"const": "service_unavailable"},
        },
    },
}

_VIEW = {
    "name": "view",
    "in": "query",
    "schema": {"enum": ["full", "slim"]},
    "description": "full adds artifacts, resource usage, hashes and lineage",
}
_COMMON_ERRORS = {
    "400": _error("Malformed request (for example a NUL character in the query string)"),
    "405": _error("Wrong method"),
    "500": _error("A fault of the service (no traceback)"),
}
_UNAVAILABLE = {"503": _json(_ref("ServiceUnavailable"), "The queue is full or Docker is unavailable (Retry-After)")}
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
_NO_JOB = {"404": _error("Job not found")}


def _derive(summary: str, operation_id: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "operationId": operation_id,
            "parameters": [_JOB_ID],
            "requestBody": {"content": {"application/json": {"schema": _ref("DeriveRequest")}}},
            "responses": {
                "202": _json(_ref("JobSubmitted"), "The new job is queued"),
                "400": _error("Malformed JSON"),
                "422": _error("The body failed validation"),
                **_NO_JOB,
                **_UNAVAILABLE,
                **_COMMON_ERRORS,
            },
        }
    }


PATHS: dict[str, Any] = {
    "/execute": {
        "post": {
            "summary": "Run code and wait for the result",
            "operationId": "execute",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("ExecuteRequest")}},
            },
            "responses": {
                "200": _json(_ref("ExecuteResponse"), "The run ended (successfully or not), or an earlier one did"),
                "400": _error("Malformed JSON"),
                "409": _json(_ref("IdempotencyConflict"), "The idempotency_key was used for another payload"),
                "415": _error("Not a JSON body"),
                "422": _error("The body failed validation (including an unknown job_type)"),
                **_UNAVAILABLE,
                **_COMMON_ERRORS,
            },
        }
    },
    "/execute/async": {
        "post": {
            "summary": "Queue code to run on the worker cluster",
            "operationId": "executeAsync",
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ExecuteRequest")}}},
            "responses": {
                "202": _json(_ref("JobSubmitted"), "Queued"),
                "200": _json(_ref("JobSubmitted"), "The job already submitted with this idempotency_key"),
                "400": _error("Malformed JSON"),
                "409": _json(_ref("IdempotencyConflict"), "The idempotency_key was used for another payload"),
                "415": _error("Not a JSON body"),
                "422": _error("The body failed validation"),
                **_UNAVAILABLE,
                **_COMMON_ERRORS,
            },
        }
    },
    "/jobs/{job_id}": {
        "get": {
            "summary": "A job's status",
            "operationId": "getJob",
            "parameters": [_JOB_ID],
            "responses": {"200": _json(_ref("JobStatus"), "The status"), **_NO_JOB, **_COMMON_ERRORS},
        }
    },
    "/jobs/{job_id}/result": {
        "get": {
            "summary": "A job's execution record, optionally waiting for it to end",
            "operationId": "getJobResult",
            "parameters": [
                _JOB_ID,
                {"name": "wait", "in": "query", "schema": {"type": "boolean"}},
                {"name": "timeout", "in": "query", "schema": {"type": "number", "minimum": 1, "maximum": 300}},
                _VIEW,
            ],
            "responses": {
                "200": _json(
                    {"oneOf": [_ref("ExecutionRecord"), _ref("JobInProgress")]},
                    "The record once ended; without wait, the progress while it runs",
                ),
                "400": _error("wait or timeout out of range"),
                "408": _json(_ref("WaitTimeout"), "The job did not end within timeout"),
                "422": _error("A bad view parameter"),
                **_NO_JOB,
                **_COMMON_ERRORS,
            },
        }
    },
    "/jobs/{job_id}/cancel": {
        "post": {
            "summary": "Cancel a queued job or stop a running one (answers once it has stopped)",
            "operationId": "cancelJob",
            "parameters": [_JOB_ID],
            "responses": {
                "200": _json(_ref("Cancelled"), "Cancelled"),
                "409": _error("The job had already ended"),
                **_NO_JOB,
                **_COMMON_ERRORS,
            },
        }
    },
    "/jobs/{job_id}/rerun": _derive("Run a job's code again, as a new job", "rerunJob"),
    "/jobs/{job_id}/fork": _derive("Run new code on a job's input, as a new job", "forkJob"),
    "/jobs/{job_id}/artifacts/{name}": {
        "get": {
            "summary": "Download a file the job left in /output (HEAD too; ETag, If-None-Match → 304)",
            "operationId": "getArtifact",
            "parameters": [_JOB_ID, {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "The file", "content": {"application/octet-stream": {}}},
                "304": {"description": "Not modified (If-None-Match matched the ETag)"},
                "404": _error("No such job or artifact"),
                **_COMMON_ERRORS,
            },
        }
    },
    "/health": {
        "get": {
            "summary": "Health: the engine, the circuit breaker, the queue (answers fast even if Docker hangs)",
            "operationId": "health",
            "security": [],
            "responses": {"200": _json(_ref("Health"), "healthy or degraded"), **_COMMON_ERRORS},
        }
    },
    "/health/ready": {
        "get": {
            "summary": "Readiness: 200 only when the database, its migrations, the queue and an engine all answer",
            "operationId": "ready",
            "security": [],
            "responses": {
                "200": _json(_ref("Readiness"), "Ready to serve"),
                "503": _json(_ref("Readiness"), "Not ready: the checks whose ok is false say why"),
                **_COMMON_ERRORS,
            },
        }
    },
    "/dlq": {
        "get": {
            "summary": "Dead letter queue entries, newest first",
            "operationId": "listDeadLetters",
            "parameters": [
                {"name": "error_type", "in": "query", "schema": {"enum": ["internal_error", "service_unavailable"]}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 1000000000}},
            ],
            "responses": {
                "200": _json(_ref("DeadLetterPage"), "One page"),
                "422": _error("A bad query parameter"),
                **_COMMON_ERRORS,
            },
        }
    },
    "/dlq/stats": {
        "get": {
            "summary": "Dead letter queue counts",
            "operationId": "deadLetterStats",
            "responses": {"200": _json(_ref("DeadLetterStats"), "Counts"), **_COMMON_ERRORS},
        }
    },
    "/dlq/{entry_id}": {
        "delete": {
            "summary": "Remove an entry",
            "operationId": "deleteDeadLetter",
            "parameters": [{"name": "entry_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "required": ["status", "entry_id"],
                        "properties": {"status": {"const": "removed"}, "entry_id": {"type": "integer"}},
                    },
                    "Removed",
                ),
                "404": _error("No such entry"),
                **_COMMON_ERRORS,
            },
        }
    },
    "/dlq/{entry_id}/requeue": {
        "post": {
            "summary": "Run an entry's job again, as a new job linked to it",
            "operationId": "requeueDeadLetter",
            "parameters": [{"name": "entry_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "responses": {
                "202": _json(
                    {
                        "type": "object",
                        "required": ["job_id", "status", "entry_id"],
                        "properties": {
                            "job_id": {"type": "string", "format": "uuid"},
                            "status": {"enum": STATUSES},
                            "entry_id": {"type": "integer"},
                        },
                    },
                    "Queued",
                ),
                "404": _error("No such entry"),
                "409": _error("Already requeued"),
                **_UNAVAILABLE,
                **_COMMON_ERRORS,
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (text format)",
            "operationId": "metrics",
            "responses": {
                "200": {"description": "text/plain; version=0.0.4", "content": {"text/plain": {}}},
                **_COMMON_ERRORS,
            },
        }
    },
    "/pool/stats": {
        "get": {
            "summary": "Queue, worker budget and the warm pool of each environment",
            "operationId": "poolStats",
            "responses": {"200": _json(_ref("PoolStats"), "Counts and limits"), **_COMMON_ERRORS},
        }
    },
    "/executions": {
        "get": {
            "summary": "List execution records, newest first",
            "operationId": "listExecutions",
            "parameters": [
                {"name": "status", "in": "query", "schema": {"enum": STATUSES}},
                {"name": "job_type", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                },
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 1000000000}},
                _VIEW,
            ],
            "responses": {
                "200": _json(_ref("ExecutionPage"), "One page of records"),
                "422": _error("A bad query parameter"),
                **_COMMON_ERRORS,
            },
        }
    },
    "/executions/{execution_id}": {
        "get": {
            "summary": "One execution record",
            "operationId": "getExecution",
            "parameters": [
                {"name": "execution_id", "in": "path", "required": True, "schema": {"type": "string"}},
                _VIEW,
            ],
            "responses": {
                "200": _json(_ref("ExecutionRecord"), "The record"),
                "404": _error("No such execution"),
                "422": _error("A bad query parameter"),
                **_COMMON_ERRORS,
            },
        }
    },
    "/job-types": {
        "get": {
            "summary": "List job types (environments)",
            "operationId": "listJobTypes",
            "responses": {
                "200": _json({"type": "array", "items": _ref("JobType")}, "Every job type"),
                **_COMMON_ERRORS,
            },
        }
    },
    "/job-types/{name}": {
        "get": {
            "summary": "One job type",
            "operationId": "getJobType",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": _json(_ref("JobType"), "The job type"),
                "404": _error("No such job type"),
                **_COMMON_ERRORS,
            },
        }
    },
    "/job-types/{name}/build": {
        "post": {
            "summary": "Build the job type's image (no-op when up to date)",
            "operationId": "buildJobType",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": _json(_ref("BuildResult"), "The image is built and up to date"),
                "404": _error("No such job type"),
                "409": _error("A build of this job type is already running"),
                "422": _error("The build failed (which package, and why); the previous image stays in use"),
                "503": _json(_ref("ServiceUnavailable"), "Docker is unavailable (Retry-After)"),
                **_COMMON_ERRORS,
            },
        }
    },
}


_AUTH_ERRORS = {
    "401": _error("No API key (X-API-Key or Authorization: Bearer), or an invalid or revoked one"),
    "403": _error("The key lacks the admin scope this needs, or a browser session's change lacks its CSRF token"),
    "429": _error("Too many requests a minute, or too many jobs in progress (Retry-After)"),
}
_PUBLIC = {"/health", "/health/ready"}


def _with_auth_errors(paths: dict[str, Any]) -> dict[str, Any]:
    """Every endpoint but the public ones can answer 401, 403 and 429."""
    return {
        path: {
            method: {**op, "responses": {**op["responses"], **_AUTH_ERRORS}} if path not in _PUBLIC else op
            for method, op in operations.items()
        }
        for path, operations in paths.items()
    }


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tako VM for Django",
            "version": settings.VERSION,
            "description": (
                "Runs untrusted Python in locked-down Docker containers. Wire-compatible with Tako VM's "
                "REST API. Every response carries X-Correlation-ID; errors are "
                '`{"detail": ..., "correlation_id": ...}`.'
            ),
        },
        "paths": _with_auth_errors(PATHS),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"apiKey": []}, {"bearer": []}],
    }
