"""Helpers shared by test modules (no test module imports another)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import docker
import pytest
import requests
from django.conf import settings
from django.test import Client
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from executions.api.app import openapi_document
from executions.sandbox.docker import POOL_NAME_PREFIX, managed_label_filter
from executions.sandbox.docker.client import WORKDIR_LABEL
from executions.sandbox.docker.pool import TAKEN_FILE

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
SPEC_URI = "urn:tako:openapi"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"


def wait_for(predicate: Callable[[], T], timeout: float = 30, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def submit(url: str, code: str, **fields: Any) -> str:
    response = requests.post(f"{url}/execute/async", json={"code": code, **fields}, timeout=10)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    return str(response.json()["job_id"])


def containers_of(job_id: str) -> list[dict[str, Any]]:
    """The containers running a job: created for it (labelled), or taken from the warm pool."""
    import docker

    from executions.sandbox.docker import container_execution, managed_label_filter

    found = docker.from_env(version="auto").api.containers(all=True, filters={"label": managed_label_filter()})
    return [summary for summary in found if container_execution(summary) == job_id]


# -- processes, found by what they run and an entry of their environment ------------------------
def pids_of(pattern: str) -> set[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False).stdout
    return {int(pid) for pid in found.split()}


def environ_has(pid: int, entry: str) -> bool:
    try:
        return entry.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def pids_with(pattern: str, entry: str) -> set[int]:
    """The processes running `pattern` whose environment holds `entry` (NAME=value)."""
    return {pid for pid in pids_of(pattern) if environ_has(pid, entry)}


def parent_of(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for a parent (here, PID 1) to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


# Everything a test needs from the machine comes from the one set-up step, before any test runs.
SETUP_HINT = "run `make setup-test` (scripts/setup.sh test; `make test` runs it first)"


def require_tool(name: str) -> str:
    """The path of a program set-up installs; fails the test naming the set-up step when it is missing."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {SETUP_HINT}")
    return found


# -- an API client that checks every response against the OpenAPI document ----------------------
class _Spec:
    """The document generated from api/schemas.py, as /openapi.json serves it."""

    def __init__(self) -> None:
        self.document = openapi_document()
        self.registry = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(self.document))
        self.routes = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"), template)
            for template in self.document["paths"]
        ]

    def operation(self, path: str, method: str) -> dict[str, Any] | None:
        for pattern, template in self.routes:
            if pattern.match(path):
                return self.document["paths"][template].get(method.lower())
        return None

    def check(self, method: str, path: str, response: Any) -> None:
        operation = self.operation(path, method)
        if operation is None or method == "HEAD":
            return
        documented = operation["responses"].get(str(response.status_code))
        assert documented is not None, f"{method} {path} answered {response.status_code}, not documented"
        if "application/json" not in documented.get("content", {}):
            return  # a file or an empty 304
        schema = documented["content"]["application/json"]["schema"]
        body = json.loads(response.content)
        validator = Draft202012Validator({"$id": "urn:tako:check", **_absolute_refs(schema)}, registry=self.registry)
        errors = sorted(validator.iter_errors(body), key=str)
        assert not errors, f"{method} {path} {response.status_code} does not match the spec: {errors[0]}"


def _absolute_refs(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            k: (SPEC_URI + v if k == "$ref" and v.startswith("#") else _absolute_refs(v)) for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_absolute_refs(v) for v in schema]
    return schema


SPEC = _Spec()


class ApiClient:
    """Django's test client speaking JSON; every API response is validated against /openapi.json."""

    def __init__(self) -> None:
        self.client = Client()

    def request(self, method: str, path: str, body: Any = None, **extra: Any) -> Any:
        """`extra` is Django's: WSGI names such as HTTP_X_CORRELATION_ID, or content_type."""
        kwargs: dict[str, Any] = dict(extra)
        if body is not None:
            kwargs["data"] = body if isinstance(body, str | bytes) else json.dumps(body)
            kwargs.setdefault("content_type", "application/json")
        response = getattr(self.client, method.lower())(path, **kwargs)
        SPEC.check(method, path.split("?")[0], response)
        return response

    def get(self, path: str, **extra: Any) -> Any:
        return self.request("GET", path, **extra)

    def post(self, path: str, body: Any = None, **extra: Any) -> Any:
        return self.request("POST", path, body, **extra)


def multipart_body(request: Any, files: dict[str, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body: a `request` part holding `request` (JSON-encoded unless a string;
    None: no such part) and one part per file, its filename the path (Django's own encoder keeps
    only a filename's last component). Returns the body and its Content-Type."""
    boundary = "tako-test-boundary-7d1f"
    parts = []
    if request is not None:
        text = request if isinstance(request, str) else json.dumps(request)
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="request"\r\n'
            f"Content-Type: application/json\r\n\r\n{text}\r\n".encode()
        )
    for path, data in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _waiting_in_the_pool(summary: dict[str, Any]) -> bool:
    """A pooled container no job has taken (a taken one keeps its name; its folder says so)."""
    workdir = Path((summary.get("Labels") or {}).get(WORKDIR_LABEL, "/nonexistent"))
    name = summary["Names"][0].lstrip("/")
    return name.startswith(POOL_NAME_PREFIX) and summary["State"] == "running" and not (workdir / TAKEN_FILE).exists()


def _listed_but_gone(client: Any, summary: dict[str, Any]) -> bool:
    """Docker 20.10 can list a removed container as "removing" until it restarts (its exit handled
    after the removal wrote it back to the list); the engine knows no such container."""
    if summary["State"] != "removing":
        return False
    try:
        client.inspect_container(summary["Id"])
    except docker.errors.NotFound:
        return True
    return False


def job_containers(*, settle: float = 20.0) -> list[tuple[str, str]]:
    """(name, state) of this deployment's containers except ready pooled ones, once the background
    removal of finished runs has had up to `settle` seconds."""
    client = docker.from_env(version="auto").api
    deadline = time.monotonic() + settle
    while True:
        summaries = client.containers(all=True, filters={"label": managed_label_filter()})
        found = [
            (s["Names"][0].lstrip("/"), s["State"])
            for s in summaries
            if not _waiting_in_the_pool(s) and not _listed_but_gone(client, s)
        ]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


# -- the real service: daphne and a worker cluster on the test database -------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    """A `manage.py`-style process of the service, its output kept in a log file for assertions."""

    def __init__(self, args: list[str], log: Path, **env: str) -> None:
        self.args = args
        self.log = log
        environment = {
            **os.environ,
            **service_database_env(),
            "TAKO_ALLOW_ANONYMOUS": "1",
            "TAKO_RATE_LIMIT_PER_MINUTE": "0",
            **env,
        }
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, *args], cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so a test can kill all of it
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """Stop as a supervisor would (SIGTERM to the main process), killing what remains after 15 s."""
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=15)
        self.kill()

    def kill(self) -> None:
        """SIGKILL to every process of it at once: a crash, nothing gets to clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def service_database_env() -> dict[str, str]:
    """Points a service process at the test database (whichever engine this pass uses)."""
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        return {"TAKO_SQLITE_PATH": str(database["NAME"])}
    user, password = database.get("USER", ""), database.get("PASSWORD", "")
    url = f"postgres://{user}:{password}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    return {"DATABASE_URL": url}


def start_daphne(log: Path, **env: str) -> tuple[ServiceProcess, str]:
    port = free_port()
    args = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "takoweb.asgi:application"]
    server = ServiceProcess(args, log, **env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"daphne did not start: {server.output()}")


def start_worker(log: Path, name: str, workers: int = 4, **env: str) -> ServiceProcess:
    worker = ServiceProcess(
        ["manage.py", "tako_worker"],
        log,
        TAKO_WORKER_NAME=name,
        TAKO_MAX_WORKERS=str(workers),
        TAKO_QUEUE_POLL="0.05",
        **env,
    )
    deadline = time.monotonic() + 30
    while "] running." not in worker.output():
        if time.monotonic() > deadline or worker.process.poll() is not None:
            worker.kill()
            raise RuntimeError(f"the worker did not start: {worker.output()}")
        time.sleep(0.1)
    return worker


# -- a webhook receiver on loopback ---------------------------------------------------------------
class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST (headers, raw body, arrival time) and
    answers with the next status of `answers` (200 once they run out), after `delay` seconds."""

    def __init__(self, answers: list[int] | None = None, delay: float = 0.0) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.answers = list(answers or [])
        self.received: list[tuple[dict[str, str], bytes, float]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.received.append((dict(self.headers.items()), body, time.time()))
                    status = receiver.answers.pop(0) if receiver.answers else 200
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify_signature(headers: dict[str, str], body: bytes, secret: str) -> bool:
    """What a receiver does: recompute the HMAC-SHA256 of the raw body and compare in constant time."""
    import hashlib
    import hmac

    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get("X-Tako-Signature", ""))


# -- server-sent events ---------------------------------------------------------------------------
def sse_events(response: Any) -> Any:
    """Each event of a `requests` response opened with stream=True: {"id", "event", "data"}
    (data parsed as JSON), as an EventSource would see them; comment lines are skipped."""
    event: dict[str, Any] = {}
    for line in response.iter_lines(decode_unicode=True):
        if line is None or line.startswith(":"):
            continue
        if not line:
            if event:
                yield {**event, "data": json.loads(event.get("data", "null"))}
                event = {}
            continue
        name, _, value = line.partition(":")
        event[name] = value[1:] if value.startswith(" ") else value


# Prints the container's CPU weight as its cgroup has it (v1: cpu.shares; v2: cpu.weight).
CPU_WEIGHT = (
    "import os\n"
    "for path in ('/sys/fs/cgroup/cpu/cpu.shares', '/sys/fs/cgroup/cpu.weight'):\n"
    "    if os.path.exists(path):\n"
    "        print(open(path).read().strip())\n"
    "        break\n"
)
