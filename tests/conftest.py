"""Shared fixtures. Anything the sandbox does is tested against the real Docker engine."""

from __future__ import annotations

import contextlib
import importlib
import os
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest

from executions.models import Environment
from executions.resilience import forget_breaker_reads
from executions.sandbox import get_sandbox
from executions.sandbox.docker import DockerSandbox
from executions.sandbox.images import ensure_image
from executions.services.pool import pool_counts_flush
from tests.support import SETUP_HINT, ApiClient, job_containers, require_tool, start_daphne, start_worker

# Playwright's sync API runs an event loop in the test thread; the tests' own ORM calls are safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


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


@pytest.fixture(scope="session", autouse=True)
def _pool_counts_written_while_the_test_database_exists(django_db_setup: None, django_db_blocker: Any) -> Any:
    """The pool's hit and miss counts are written on a timer and at exit; at a test run's exit its
    database is gone, so the last counts are written before it goes."""
    yield
    with django_db_blocker.unblock():
        pool_counts_flush()


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
STRICT = importlib.import_module("executions.migrations.0022_environment_runtime").STRICT
# (data-processing's packages since 0026: matplotlib too)
SHIPPED["data-processing"] = {
    **SHIPPED["data-processing"],
    "requirements": importlib.import_module(
        "executions.migrations.0026_displays_and_matplotlib"
    ).DATA_PROCESSING_REQUIREMENTS,
}


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


TEST_POOL_SIZES = {"default": 2, "strict": 1, "data-processing": 0, "ml-inference": 0}


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
        Environment.objects.get_or_create(name=STRICT["name"], defaults=STRICT)
        # Fixed pools unless a test says otherwise: default keeps 2, strict 1, and the package
        # environments none (their preloaded pools, sized from demand, have tests of their own).
        for name, size in TEST_POOL_SIZES.items():
            Environment.objects.filter(name=name, pool_size=None).update(pool_size=size)


@pytest.fixture
def scratch_environment_name() -> Any:
    """A job-type name no image exists for; whatever image a test builds under it is removed."""
    import docker

    name = f"scratch-{uuid.uuid4().hex[:10]}"
    yield name
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker.from_env(version="auto").images.remove(f"tako-vm-{name}:latest", force=True)


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
        self.pool_start(spec.shape, "test", quick=spec.quick)  # (of the job's CPU weight, as the keeper would)
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


@pytest.fixture
def api_nodocker(db: None) -> ApiClient:
    """For tests that never reach the sandbox (validation, reads)."""
    return ApiClient()


@pytest.fixture(scope="session")
def service_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service-logs")


class LiveService:
    """daphne + one worker cluster (4 workers: 3 for long jobs), as `make run` starts them, on the test database."""

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
    """The URL of the whole service (daphne + a qcluster of 4 workers), as `make run` starts it."""
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
