"""Shared fixtures. Anything the sandbox does is tested against the real Docker engine."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest
from django.conf import settings
from django.test import Client
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from executions.api.app import openapi_document
from executions.models import Environment
from executions.resilience import forget_breaker_reads
from executions.sandbox import get_sandbox
from executions.sandbox.docker import POOL_NAME_PREFIX, DockerSandbox, managed_label_filter
from executions.sandbox.images import ensure_image

ROOT = Path(__file__).resolve().parent.parent
SPEC_URI = "urn:tako:openapi"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
# Playwright's sync API runs an event loop in the test thread; the tests' own ORM calls are safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


# Everything a test needs from the machine comes from the one set-up step, before any test runs.
SETUP_HINT = "run `make setup-test` (scripts/setup.sh test; `make test` runs it first)"


def require_tool(name: str) -> str:
    """The path of a program set-up installs; fails the test naming the set-up step when it is missing."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {SETUP_HINT}")
    return found


@pytest.fixture(scope="session")
def docker_engine() -> docker.DockerClient:
    """The engine set-up starts; its absence fails the test with the step that provides it."""
    try:
        client = docker.from_env(version="auto", timeout=10)
        client.ping()
    except Exception as exc:  # the SDK raises several kinds here, all meaning "no engine"
        pytest.fail(f"no Docker engine answers ({exc.__class__.__name__}): {SETUP_HINT}")
    return client


@pytest.fixture(autouse=True)
def _engine_for_docker_tests(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("docker"):
        request.getfixturevalue("docker_engine")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    """Debian's Chromium (Playwright's own download cannot be fetched here), quiet on the network."""
    require_tool("/usr/bin/chromium")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": flags}


@pytest.fixture(scope="session")
def default_image(docker_engine: docker.DockerClient) -> str:
    """The `default` job-type image, built if missing (a no-op when up to date)."""
    return ensure_image("default", requirements=[]).image


SHIPPED = {e["name"]: e for e in importlib.import_module("executions.migrations.0004_ship_data_environments").SHIPPED}


@pytest.fixture(scope="session")
def shipped_images(default_image: str) -> dict[str, str]:
    """The images of the shipped environments with packages, built offline if missing."""
    return {name: ensure_image(name, requirements=e["requirements"]).image for name, e in SHIPPED.items()}


@pytest.fixture(autouse=True)
def _anonymous_api(settings: Any) -> None:
    """Most tests call the API without a key, as `make run` on loopback allows, and more often
    than a person would; test_auth turns both limits back on."""
    settings.TAKO_ALLOW_ANONYMOUS = True
    settings.TAKO_RATE_LIMIT_PER_MINUTE = 0


@pytest.fixture(autouse=True)
def _no_remembered_breaker_reads() -> None:
    """Each test starts from the breaker's row: this process forgets what it last read of it."""
    forget_breaker_reads()


@pytest.fixture(autouse=True)
def _shipped_environments(request: pytest.FixtureRequest) -> None:
    """Transactional tests flush the tables; put the shipped `default` job type back."""
    if "django_db_setup" in request.fixturenames or request.node.get_closest_marker("django_db"):
        request.getfixturevalue("_django_db_helper")
        Environment.objects.get_or_create(
            name="default", defaults={"memory_limit": "512m", "cpu_limit": 1.0, "timeout": 30, "pool_size": 2}
        )
        for name, definition in SHIPPED.items():
            Environment.objects.get_or_create(name=name, defaults=definition)


@pytest.fixture
def scratch_environment_name() -> Any:
    """A job-type name no image exists for; whatever image a test builds under it is removed."""
    import docker

    name = f"scratch-{uuid.uuid4().hex[:10]}"
    yield name
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker.from_env(version="auto").images.remove(f"tako-vm-{name}:latest", force=True)


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


@pytest.fixture
def api(transactional_db: None, default_image: str) -> ApiClient:
    """For tests that run code: the sandbox writes from its own thread, so data must be committed."""
    return ApiClient()


@pytest.fixture(params=["cold", "pool"])
def container_path(request: pytest.FixtureRequest, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Runs the test twice: every job in a container created for it, then every job in a container
    of the warm pool (one is started just before each job takes it, as the pool keeper would have).
    Both paths must behave the same; on the pool path, every job must really have used the pool.
    Its own deployment id keeps the live service's pool keeper away from these containers."""
    settings.TAKO_DEPLOYMENT_ID = f"path-test-{uuid.uuid4().hex[:8]}"
    settings.TAKO_POOL_ENABLED = request.param == "pool"
    took: list[bool] = []
    take = DockerSandbox._take_pooled

    def started_then_taken(self: DockerSandbox, spec: Any) -> Any:
        self.pool_start(spec.shape, "test")
        taken = take(self, spec)
        took.append(taken is not None)
        return taken

    if request.param == "pool":
        monkeypatch.setattr(DockerSandbox, "_take_pooled", started_then_taken)
    yield request.param
    job_containers()  # let background removals finish, then remove whatever is left
    get_sandbox().remove_stale_containers()
    if request.param == "pool":
        assert took and all(took), f"jobs that missed the pool: {took.count(False)} of {len(took)}"


def job_containers(*, settle: float = 20.0) -> list[tuple[str, str]]:
    """(name, state) of this deployment's containers except ready pooled ones, once the background
    removal of finished runs has had up to `settle` seconds."""
    client = docker.from_env(version="auto").api
    deadline = time.monotonic() + settle
    while True:
        summaries = client.containers(all=True, filters={"label": managed_label_filter()})
        found = [(s["Names"][0].lstrip("/"), s["State"]) for s in summaries]
        found = [
            (name, state) for name, state in found if not (name.startswith(POOL_NAME_PREFIX) and state == "running")
        ]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.fixture
def api_nodocker(db: None) -> ApiClient:
    """For tests that never reach the sandbox (validation, reads)."""
    return ApiClient()


# -- the real service: daphne and a worker cluster on the test database -------------------------
def _free_port() -> int:
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
            **test_database_env(),
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


def test_database_env() -> dict[str, str]:
    """Points a service process at the test database (whichever engine this pass uses)."""
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        return {"TAKO_SQLITE_PATH": str(database["NAME"])}
    user, password = database.get("USER", ""), database.get("PASSWORD", "")
    url = f"postgres://{user}:{password}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    return {"DATABASE_URL": url}


def start_daphne(log: Path, **env: str) -> tuple[ServiceProcess, str]:
    port = _free_port()
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


def start_worker(log: Path, name: str, workers: int = 2, **env: str) -> ServiceProcess:
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


@pytest.fixture(scope="session")
def service_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service-logs")


class LiveService:
    """daphne + one worker cluster (2 workers), as `make run` starts them, on the test database."""

    WORKER_NAME = "pytest-worker"

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.env: dict[str, str] = {}
        self.server, self.url = start_daphne(logs / "daphne.log")
        self.worker = start_worker(logs / "worker.log", name=self.WORKER_NAME)

    def restart_worker(self) -> None:
        if self.worker.process.poll() is None:
            self.worker.stop()
        self.worker = start_worker(self.logs / "worker.log", name=self.WORKER_NAME, **self.env)

    def restart(self, **env: str) -> None:
        """Both processes again, with these settings in their environment (none: the defaults)."""
        self.stop()
        self.env = env
        self.server, self.url = start_daphne(self.logs / "daphne.log", **env)
        self.worker = start_worker(self.logs / "worker.log", name=self.WORKER_NAME, **env)

    def output(self) -> str:
        return self.server.output() + self.worker.output()

    def stop(self) -> None:
        self.worker.stop()
        self.server.stop()


@pytest.fixture(scope="session")
def _live_service(django_db_setup: None, django_db_blocker: Any, default_image: str, service_logs: Path) -> Any:
    service = LiveService(service_logs)
    yield service
    service.stop()


@pytest.fixture
def live_service(transactional_db: None, _live_service: LiveService) -> LiveService:
    return _live_service


@pytest.fixture
def live_url(live_service: LiveService) -> str:
    """The URL of the whole service (daphne + a qcluster of 2 workers), as `make run` starts it."""
    return live_service.url


@pytest.fixture
def daphne_url(live_url: str) -> str:
    return live_url


@pytest.fixture(scope="module")
def docker_proxy(_live_service: LiveService, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The live service, restarted to reach Docker only through a proxy the tests switch off and on."""
    from tests.dockerproxy import DockerProxy

    proxy = DockerProxy(tmp_path_factory.mktemp("proxy") / "docker.sock")
    proxy.up()
    _live_service.restart(
        DOCKER_HOST=proxy.url,
        TAKO_BREAKER_RESET_SECONDS="5",
        TAKO_RETRY_BASE_DELAY="0.2",
        TAKO_DOCKER_TIMEOUT="3",
    )
    yield proxy
    proxy.up()
    _live_service.restart()


# The tiers, from the fixtures a test uses (a marker set by hand is kept too):
#   docker: needs the real engine;  system: starts processes of the service, or a browser.
# `pytest -m "not docker and not system"` is the fast unit tier, on FakeSandbox and the database.
ENGINE_FIXTURES = {
    "docker_engine", "default_image", "shipped_images", "scratch_environment_name", "api", "container_path",
    "own_deployment", "deploy_image",
}  # fmt: skip
SYSTEM_FIXTURES = {
    "_live_service", "live_service", "live_url", "daphne_url", "docker_proxy", "cluster", "redis_server",
    "page", "browser", "context", "service_logs",
}  # fmt: skip


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks each test with its tier; runs the browser tests last: Playwright's sync API leaves an
    event loop running in the main thread, after which Django's test client (async views through
    async_to_sync) cannot run there."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & SYSTEM_FIXTURES:
            item.add_marker(pytest.mark.system)
        if used & (ENGINE_FIXTURES | SYSTEM_FIXTURES):
            item.add_marker(pytest.mark.docker)
    items.sort(key=lambda item: item.path.name == "test_browser.py")
