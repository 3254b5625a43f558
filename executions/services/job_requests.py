"""What a caller may ask: a request to run code, or to rerun or fork a job, validated.

Every broken rule is named at once, in docs/API.md's words; the job type is resolved to its
environment. Used by admission (submissions.py) for every entry point, so the API and the pages
validate alike.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from executions.errors import FieldErrors, InvalidRequest
from executions.models import JOB_TYPE_NAME_RE, JOB_TYPE_REF_RE, Environment, EnvironmentVersion, requirement_errors
from executions.services.webhooks import webhook_url_problem

EXECUTE_FIELDS = (
    "code",
    "input_data",
    "timeout",
    "job_type",
    "startup_timeout",
    "requirements",
    "idempotency_key",
    "webhook_url",
    "files",
)
IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{8,255}$")
BATCH_FIELDS = ("code", "inputs", "job_type", "timeout", "startup_timeout", "requirements", "webhook_url", "files")
MAX_BATCH_INPUTS = 1000
JOB_TYPE_MESSAGE = "job_type must be a name of letters, digits, - and _ (optionally @<version tag> or @sha256:<digest>)"
INPUT_PATH_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
RESERVED_INPUT_PATH = "data.json"  # /input/data.json holds input_data


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class InputFile:
    """A file written read-only at /input/<path>. `data` is None for one already stored (a rerun's
    or fork's, by its sha256)."""

    path: str
    size_bytes: int
    sha256: str
    data: bytes | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ExecuteRequest:
    """A valid request to run code (the body of POST /execute, /execute/async, the New page)."""

    code: str
    environment: Environment
    input_data: dict[str, Any] = field(default_factory=dict)
    timeout: int | None = None
    startup_timeout: int | None = None
    requirements: list[str] = field(default_factory=list)
    idempotency_key: str | None = None
    webhook_url: str = ""  # POSTed the record when the job ends (services/webhooks.py); "": none
    version: EnvironmentVersion | None = None  # job_type "name@…": that build's image; None: the latest
    files: tuple[InputFile, ...] = ()

    def fingerprint(self) -> str:
        """What makes two submissions the same job (for idempotency keys), defaults filled in."""
        return request_hash(
            code=self.code,
            input_data=self.input_data,
            environment=self.environment,
            timeout=self.timeout,
            startup_timeout=self.startup_timeout,
            requirements=self.requirements,
            webhook_url=self.webhook_url,
            version=self.version,
            files=self.files,
        )


@dataclass(frozen=True)
class DeriveRequest:
    """What a rerun (`{job_type?, timeout?}`) or fork (`{code, job_type?, timeout?}`) changes."""

    code: str | None = None
    environment: Environment | None = None
    timeout: int | None = None
    version: EnvironmentVersion | None = None


def execute_request_parse(body: Any) -> ExecuteRequest:
    """Validate a request body; InvalidRequest names every broken rule (docs/API.md's messages)."""
    if not isinstance(body, dict):
        raise InvalidRequest({"body": ["Request body must be a JSON object"]})
    errors = FieldErrors()
    for name in body:
        if name not in EXECUTE_FIELDS:
            errors.add(name, f"Unknown field '{name}'")
    code = _code(body, errors)
    input_data = body.get("input_data")
    if input_data is None:
        input_data = {}
    elif not isinstance(input_data, dict):
        errors.add("input_data", "input_data must be a JSON object")
    elif len(json.dumps(input_data).encode()) > settings.TAKO_MAX_INPUT_BYTES:
        errors.add("input_data", "input_data exceeds size limit (1 MB serialized)")
    timeout = _bounded_int(body, "timeout", 1, settings.TAKO_MAX_TIMEOUT, "Timeout", errors)
    startup_timeout = _bounded_int(body, "startup_timeout", 10, 600, "startup_timeout", errors)
    requirements = _requirements(body.get("requirements"), errors)
    key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not IDEMPOTENCY_KEY_RE.match(key)):
        errors.add("idempotency_key", "idempotency_key must be 8-255 characters of letters, digits, - and _")
    webhook_url = body.get("webhook_url") or ""
    problem = webhook_url_problem(webhook_url) if webhook_url else None
    if problem:
        errors.add("webhook_url", problem)
    files = input_files_parse(body.get("files"), errors)
    environment, version = job_type_named("default" if body.get("job_type") is None else body["job_type"], errors)
    errors.raise_if_any()
    assert environment is not None and code is not None
    return ExecuteRequest(
        files=files,
        code=code,
        environment=environment,
        input_data=input_data,
        timeout=timeout,
        startup_timeout=startup_timeout,
        requirements=requirements,
        idempotency_key=key,
        webhook_url=webhook_url,
        version=version,
    )


@dataclass(frozen=True)
class BatchRequest:
    """A valid batch (POST /execute/batch): one job per input, each as `job` with that input_data
    (and `job.files`, the same for all)."""

    job: ExecuteRequest
    inputs: list[dict[str, Any]]


def batch_request_parse(body: Any) -> BatchRequest:
    """Validate a batch: the fields of a single job (checked as one; `files` too, shared by every
    job), and 1 to 1000 inputs, each a JSON object within the input size limit; InvalidRequest
    names every broken rule."""
    if not isinstance(body, dict):
        raise InvalidRequest({"body": ["Request body must be a JSON object"]})
    errors = FieldErrors()
    for name in body:
        if name not in BATCH_FIELDS:
            errors.add(name, f"Unknown field '{name}'")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not 1 <= len(inputs) <= MAX_BATCH_INPUTS:
        errors.add("inputs", f"inputs must be a list of 1 to {MAX_BATCH_INPUTS} JSON objects")
    else:
        for index, item in enumerate(inputs):
            if not isinstance(item, dict):
                errors.add(f"inputs[{index}]", f"inputs[{index}] must be a JSON object")
            elif len(json.dumps(item).encode()) > settings.TAKO_MAX_INPUT_BYTES:
                errors.add(f"inputs[{index}]", f"inputs[{index}] exceeds size limit (1 MB serialized)")
    job = None
    try:
        job = execute_request_parse({k: v for k, v in body.items() if k in BATCH_FIELDS and k != "inputs"})
    except InvalidRequest as exc:
        for name, messages in exc.errors.items():
            for message in messages:
                errors.add(name, message)
    errors.raise_if_any()
    assert job is not None and isinstance(inputs, list)
    return BatchRequest(job=job, inputs=inputs)


def derive_request_parse(body: Any, *, require_code: bool) -> DeriveRequest:
    """Validate the body of a rerun or (with `require_code`) a fork."""
    if not isinstance(body, dict):
        raise InvalidRequest({"body": ["Request body must be a JSON object"]})
    errors = FieldErrors()
    allowed = ("code", "job_type", "timeout") if require_code else ("job_type", "timeout")
    for name in body:
        if name not in allowed:
            errors.add(name, f"Unknown field '{name}'")
    code = _code(body, errors) if require_code else None
    timeout = _bounded_int(body, "timeout", 1, settings.TAKO_MAX_TIMEOUT, "Timeout", errors)
    environment, version = (
        job_type_named(body["job_type"], errors) if body.get("job_type") is not None else (None, None)
    )
    errors.raise_if_any()
    return DeriveRequest(code=code, environment=environment, timeout=timeout, version=version)


def job_type_named(value: Any, errors: FieldErrors) -> tuple[Environment | None, EnvironmentVersion | None]:
    """The environment a request's job_type names and, for `name@<tag>` or `name@sha256:<digest>`,
    that build of it; (None, None) with the reason added to `errors` (an unknown version is named)."""
    if not isinstance(value, str) or not re.match(JOB_TYPE_REF_RE, value):
        errors.add("job_type", JOB_TYPE_MESSAGE)
        return None, None
    name, _, spec = value.partition("@")
    environment = environment_named(name, errors)
    if environment is None or not spec:
        return environment, None
    if spec.startswith("sha256:"):
        found = list(environment.versions.filter(digest__startswith=spec)[:2])
        version = found[0] if len(found) == 1 else None
    else:
        version = environment.versions.filter(tag=spec).first()
    if version is None:
        tags = ", ".join(environment.versions.values_list("tag", flat=True)) or "none built yet"
        errors.add("job_type", f"Unknown version '{spec}' of job_type '{name}'; versions: {tags}")
        return None, None
    return environment, version


def input_files_parse(value: Any, errors: FieldErrors) -> tuple[InputFile, ...]:
    """`files` ({path: base64 text}, or {path: bytes} from a multipart request) as InputFiles; every
    broken rule is added to `errors` under "files", naming the file. Sizes are checked from the
    encoded length before anything is decoded."""
    if value is None or value == {}:
        return ()
    if not isinstance(value, dict):
        errors.add("files", "files must be an object of {path: base64 content}")
        return ()
    problems: list[str] = []
    limit, each, total = (
        settings.TAKO_MAX_INPUT_FILES,
        settings.TAKO_MAX_INPUT_FILE_BYTES,
        settings.TAKO_MAX_INPUT_FILES_BYTES,
    )
    if len(value) > limit:
        problems.append(f"At most {limit} files are allowed ({len(value)} sent)")
    sizes: dict[str, int] = {}
    for path, content in value.items():
        problem = input_path_problem(path, others=value)
        if problem is None and not isinstance(content, str | bytes):
            problem = "its content must be a base64 string"
        if problem is None:
            sizes[path] = len(content) if isinstance(content, bytes) else _decoded_size(content)
            if sizes[path] > each:
                problem = f"it is {sizes[path]} bytes, over the limit of {each} bytes per file"
        if problem is not None:
            problems.append(f"File {path!r}: {problem}")
    if not problems and sum(sizes.values()) > total:
        problems.append(f"Files total {sum(sizes.values())} bytes, over the limit of {total} bytes in all")
    files = []
    if not problems:  # only now, with every size known to be within the limits, decode
        for path, content in value.items():
            data = content if isinstance(content, bytes) else _base64_decoded(content)
            if data is None:
                problems.append(f"File {path!r}: its content is not valid base64")
                continue
            files.append(InputFile(path, len(data), hashlib.sha256(data).hexdigest(), data))
    for problem in problems:
        errors.add("files", problem)
    return () if problems else tuple(sorted(files, key=lambda f: f.path))


def input_path_problem(path: Any, *, others: dict[str, Any] | None = None) -> str | None:
    """What is wrong with an input file's path (None: nothing)."""
    if not isinstance(path, str) or not path:
        return "the path must be a non-empty string"
    if path.startswith("/"):
        return "absolute paths are not allowed; give a path relative to /input"
    if ".." in path.split("/") or "." in path.split("/"):
        return "'..' and '.' are not allowed in a path"
    if not INPUT_PATH_RE.match(path):
        return f"the path must match {INPUT_PATH_RE.pattern} (letters, digits, '.', '_', '-', folders with '/')"
    if path.split("/")[0] == RESERVED_INPUT_PATH:
        return f"/input/{RESERVED_INPUT_PATH} holds input_data; choose another name"
    if others is not None and any(other.startswith(path + "/") for other in others if isinstance(other, str)):
        return "the path is also a folder of another file"
    return None


def _decoded_size(text: str) -> int:
    """The size base64 text decodes to (exact for valid text), without decoding it."""
    stripped = text.rstrip("=")
    return len(stripped) * 3 // 4


def _base64_decoded(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def environment_named(name: Any, errors: FieldErrors) -> Environment | None:
    """The environment (job type) called `name`, or None with the reason added to `errors`."""
    if not isinstance(name, str) or not re.match(JOB_TYPE_NAME_RE, name):
        errors.add("job_type", JOB_TYPE_MESSAGE)
        return None
    environment = Environment.objects.filter(name=name).first()
    if environment is None:
        available = ", ".join(Environment.objects.values_list("name", flat=True))
        errors.add("job_type", f"Unknown job_type '{name}'; available: {available}")
    return environment


def _code(body: dict[str, Any], errors: FieldErrors) -> str | None:
    code = body.get("code")
    if "code" not in body:
        errors.add("code", "Code is required")
    elif not isinstance(code, str):
        errors.add("code", "Code must be a string")
    elif not code.strip():
        errors.add("code", "Code cannot be empty")
    elif len(code) > settings.TAKO_MAX_CODE_CHARS:
        errors.add("code", f"Code exceeds size limit ({settings.TAKO_MAX_CODE_CHARS} characters)")
    else:
        return code
    return None


def _integer(value: Any) -> int | None:
    """JSON numbers that are whole (5 or 5.0), never booleans or strings."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _bounded_int(body: dict[str, Any], name: str, low: int, high: int, label: str, errors: FieldErrors) -> int | None:
    if body.get(name) is None:
        return None
    value = _integer(body[name])
    if value is None or not low <= value <= high:
        errors.add(name, f"{label} must be between {low} and {high} seconds")
        return None
    return value


def _requirements(value: Any, errors: FieldErrors) -> list[str]:
    if value is None or value == []:
        return []
    if not settings.TAKO_ALLOW_REQUIREMENTS:
        errors.add("requirements", "Per-run requirements are turned off on this deployment")
        return []
    problems = requirement_errors(value)
    for problem in problems:
        errors.add("requirements", problem)
    return [] if problems else [item.strip() for item in value]


def request_hash(
    *,
    code: str,
    input_data: dict[str, Any],
    environment: Environment,
    timeout: int | None,
    startup_timeout: int | None,
    requirements: list[str] | None,
    webhook_url: str = "",
    version: EnvironmentVersion | None = None,
    files: tuple[InputFile, ...] = (),
) -> str:
    """What makes two submissions the same job (for idempotency keys), defaults filled in."""
    request: dict[str, Any] = {
        "code": code,
        "input_data": input_data,
        "job_type": environment.name,
        "timeout": timeout or environment.timeout,
        "startup_timeout": startup_timeout or environment.startup_timeout,
        "requirements": requirements or [],
    }
    if webhook_url:  # (absent otherwise: the hashes of jobs without one are as they always were)
        request["webhook_url"] = webhook_url
    if version is not None:  # (likewise)
        request["job_version"] = version.digest
    if files:  # (absent when there are none: the hashes of jobs without files stay as they were)
        request["files"] = {f.path: f.sha256 for f in files}
    return sha256_hex(canonical_json(request))
