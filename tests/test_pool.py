"""The warm pool: containers started ahead of time, each used for exactly one job.

Keeper tests run in their own deployment (their own container label), so the live service's
keeper on the same engine neither sees nor touches their containers. The classification,
hostile-code and sandbox suites run on both paths through the `container_path` fixture.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import docker
import pytest
import requests
from django.utils import timezone

from executions.models import Environment, Execution, PoolState, ProcessBeat
from executions.sandbox import ContainerShape, RunSpec, get_sandbox
from executions.services import PoolKeeper, containers_reap, execution_create, pool_stats
from executions.services.environments import environment_shape
from executions.services.heartbeats import live_engines
from tests.support import CPU_WEIGHT, containers_of, wait_for


@pytest.fixture
def own_deployment(transactional_db: None, settings: Any, default_image: str) -> Any:
    """A deployment of its own on the shared engine; its leftovers are removed afterwards."""
    settings.TAKO_DEPLOYMENT_ID = f"pool-test-{uuid.uuid4().hex[:8]}"
    settings.TAKO_POOL_ENABLED = True
    # A live service an earlier module ran on this database may have left its keeper's rows (its
    # beat still counts for 30 s): the pool figures read here are this deployment's alone.
    PoolState.objects.all().delete()
    ProcessBeat.objects.filter(role=ProcessBeat.Role.POOL).delete()
    yield get_sandbox()
    get_sandbox().remove_stale_containers()


def default_shape() -> ContainerShape:
    environment = Environment.objects.get(name="default")
    image_ref = get_sandbox().image_ref(environment.image)
    assert image_ref is not None
    return environment_shape(environment, image_ref)


def ready(sandbox: Any, pool: str = "default") -> list[Any]:
    return [c for c in sandbox.pool_containers() if c.pool == pool and c.state == "ready"]


def ready_published_by_others(pool: str) -> int:
    """Ready containers of `pool` published by live keepers other than the tests' own (host-a)."""
    others = live_engines(ProcessBeat.Role.POOL) - {"host-a"}
    return sum(PoolState.objects.filter(environment=pool, engine__in=others).values_list("ready", flat=True))


def spec(shape: ContainerShape, code: str, **fields: Any) -> RunSpec:
    fields = {"execution_id": str(uuid.uuid4()), "input_json": '{"n": 7}', "timeout": 10, **fields}
    return RunSpec(shape=shape, code=code, **fields)


def long_job_ran(now: Any, started_ago: float, ended_ago: float) -> None:
    """A long job of `default` that ran between those many seconds before `now` (the keeper's demand)."""
    Execution.objects.create(
        code="x",
        job_type="default",
        timeout=60,
        quick=False,
        status="succeeded",
        started_at=now - timedelta(seconds=started_ago),
        ended_at=now - timedelta(seconds=ended_ago),
    )


def test_the_keeper_fills_each_pool_to_its_size_and_publishes_it(own_deployment) -> None:
    Environment.objects.filter(name="data-processing").update(pool_size=0)
    keeper = PoolKeeper(own_deployment, engine="host-a")
    keeper.tick()
    assert len(ready(own_deployment)) == 2
    state = PoolState.objects.get(engine="host-a", environment="default")
    assert (state.target, state.ready, state.in_use) == (2, 2, 0)
    # The session's live service (same database) may publish its own keeper's pool at any moment.
    assert wait_for(lambda: pool_stats()["default"]["ready"] - ready_published_by_others("default") == 2)
    keeper.tick()  # full: nothing more is started
    assert len(ready(own_deployment)) == 2


def test_a_pooled_run_is_used_once_and_the_keeper_replaces_it(own_deployment) -> None:
    keeper = PoolKeeper(own_deployment, engine="host-a")
    keeper.tick()
    before = {c.name for c in ready(own_deployment)}
    code = "import json\nprint(json.load(open('/input/data.json'))['n'] * 6)\nopen('/output/a.txt', 'w').write('x')"
    result = own_deployment.run(spec(default_shape(), code, warm_pool=True))
    assert (result.warm, result.exit_code, result.stdout) == (True, 0, "42\n")
    assert [a.name for a in result.artifacts] == ["a.txt"]
    assert len({c.name for c in ready(own_deployment)} & before) == 1  # one was taken, and is gone
    keeper.tick()
    assert len(ready(own_deployment)) == 2


def test_with_the_pool_empty_a_job_runs_cold_and_counts_as_a_miss(own_deployment) -> None:
    result = own_deployment.run(spec(default_shape(), "print('cold')", warm_pool=True))
    assert (result.warm, result.stdout) == (False, "cold\n")


def test_a_pooled_container_that_ended_unseen_costs_the_job_its_warm_start_not_its_run(own_deployment) -> None:
    own_deployment.pool_start(default_shape(), "default")
    (dead,) = ready(own_deployment)
    docker.from_env().containers.get(dead.name).kill()
    wait_for(lambda: not ready(own_deployment), what="the pooled container to end")
    result = own_deployment.run(spec(default_shape(), "print('ran')", warm_pool=True))
    assert (result.warm, result.exit_code, result.stdout) == (False, 0, "ran\n")


def test_a_pooled_run_needs_no_engine_call_from_taking_the_container_to_its_result(own_deployment, tmp_path) -> None:
    """The claim is a rename of the ready file, the job line and the output go through the run
    folder's FIFOs: with the engine hanging (every call accepted, none answered), a pooled job
    still runs and reports, at the speed of a pipe."""
    from executions.sandbox.docker import DockerSandbox
    from tests.dockerproxy import DockerProxy

    own_deployment.pool_start(default_shape(), "default")
    (waiting,) = ready(own_deployment)
    proxy = DockerProxy(tmp_path / "docker.sock")
    proxy.up()
    client = docker.DockerClient(base_url=proxy.url, version="1.41", timeout=5)
    through_proxy = DockerSandbox(own_deployment.config, client=client)
    time.sleep(1)  # its launcher is up and waiting
    proxy.hang()
    try:
        began = time.monotonic()
        result = through_proxy.run(spec(default_shape(), "print(6 * 7)", warm_pool=True))
        took = time.monotonic() - began
    finally:
        proxy.down()
    assert (result.warm, result.exit_code, result.stdout, result.stderr) == (True, 0, "42\n", "")
    assert took < 2, took  # (an engine call would have waited out the client's 5 s timeout)
    assert waiting.name not in {c.name for c in ready(own_deployment)}


@pytest.mark.parametrize("quick", [False, True])
def test_a_long_job_in_a_pooled_container_runs_at_the_long_jobs_cpu_weight(own_deployment, quick: bool) -> None:
    """Only a container at the quick jobs' weight is ready: a long job that takes it has it lowered
    before its code starts, a quick job's stays."""
    from executions.sandbox.docker.runner import LONG_CPU_SHARES, QUICK_CPU_SHARES

    own_deployment.pool_start(default_shape(), "default")
    (waiting,) = ready(own_deployment)
    container = docker.from_env(version="auto").containers.get(waiting.name)  # (renamed once taken; the id stays)
    shares: list[int] = []

    def watch() -> None:
        with contextlib.suppress(docker.errors.NotFound):
            while True:
                container.reload()
                shares.append(container.attrs["HostConfig"]["CpuShares"])
                time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    result = own_deployment.run(
        spec(default_shape(), "import time; time.sleep(1.5); print('done')", warm_pool=True, quick=quick)
    )
    assert (result.warm, result.stdout) == (True, "done\n")
    watcher.join(timeout=15)
    expected = QUICK_CPU_SHARES if quick else LONG_CPU_SHARES
    assert shares and shares[-1] == expected, shares  # (the last look before its removal)


def test_a_container_whose_launcher_dies_before_opening_its_channel_ends_its_run_at_once(
    own_deployment, monkeypatch
) -> None:
    """A FIFO's reader hears nothing of a writer that never opened it: the run asks the engine
    whether the container still runs, and does not wait out the startup timeout."""
    from executions.sandbox.docker import runner

    made = runner.make_run_dir

    def unreadable_output(run_dir):
        made(run_dir)
        (run_dir / "chan" / "out").chmod(0o600)  # the sandbox's user cannot open it
        return run_dir

    monkeypatch.setattr(runner, "make_run_dir", unreadable_output)
    began = time.monotonic()
    result = own_deployment.run(spec(default_shape(), "print(1)", startup_timeout=60))
    assert time.monotonic() - began < 10
    assert (result.exit_code, result.startup_timed_out, result.stdout) == (1, False, "")


def test_a_run_whose_engine_fails_while_it_starts_leaves_no_reader_behind(own_deployment, monkeypatch) -> None:
    """The engine failing while the run asks whether its container still runs: the run fails as
    the engine's fault, and its output's reader stops with it (no thread, no open FIFO left)."""
    from executions.sandbox import SandboxUnavailable
    from executions.sandbox.docker import runner

    made = runner.make_run_dir

    def unreadable_output(run_dir):
        made(run_dir)
        (run_dir / "chan" / "out").chmod(0o600)  # its launcher dies: the run asks the engine
        return run_dir

    def engine_gone(engine, container_id):
        raise SandboxUnavailable("Inspecting the container: Docker engine unreachable")

    monkeypatch.setattr(runner, "make_run_dir", unreadable_output)
    monkeypatch.setattr(runner, "_is_running", engine_gone)
    job = spec(default_shape(), "print(1)", startup_timeout=60)
    with pytest.raises(SandboxUnavailable):
        own_deployment.run(job)
    wait_for(
        lambda: not [t for t in threading.enumerate() if t.name == f"sandbox-reader-{job.execution_id}"],
        timeout=5,
        what="the run's output reader to stop",
    )


def test_a_pooled_run_whose_processes_all_die_ends_when_they_do(own_deployment) -> None:
    """A pooled launcher opened its FIFOs before the job's reader did, so the reader is told of no
    hang-up: it reads nothing once every writer is gone, and that ends the run."""
    own_deployment.pool_start(default_shape(), "default")
    time.sleep(1)  # its launcher is up and waiting
    code = (
        "import os, signal\nprint('bye', flush=True)\n"
        "os.kill(os.getppid(), signal.SIGKILL)\nos.kill(os.getpid(), signal.SIGKILL)"
    )
    began = time.monotonic()
    result = own_deployment.run(spec(default_shape(), code, timeout=30, warm_pool=True))
    assert time.monotonic() - began < 10
    assert (result.warm, result.timed_out, result.stdout) == (True, False, "bye\n")
    assert result.exit_code is not None and result.exit_code != 0


def test_a_pooled_container_another_keeper_is_still_starting_is_left_to_it(own_deployment) -> None:
    """Keepers of one deployment share the engine: one that lists a pooled container another has
    made but not yet started must not remove it as dead (a job could claim it the next moment)."""
    from executions.sandbox.docker.client import POOL_KEY_LABEL, POOL_LABEL, WORKDIR_LABEL
    from executions.sandbox.docker.pool import POOL_NAME_PREFIX
    from executions.sandbox.docker.runner import create, make_run_dir

    shape = default_shape()
    pool = own_deployment._pool
    run_dir = make_run_dir(pool.folder / "0123456789abcdef")
    labels = {POOL_LABEL: "default", POOL_KEY_LABEL: shape.pool_key, WORKDIR_LABEL: str(run_dir)}
    create(own_deployment.engine, shape, run_dir, labels=labels, name=POOL_NAME_PREFIX + run_dir.name)
    (made,) = [c for c in own_deployment.pool_containers() if c.name == POOL_NAME_PREFIX + run_dir.name]
    assert made.state == "starting"
    PoolKeeper(own_deployment, engine="host-a").tick()
    assert POOL_NAME_PREFIX + run_dir.name in {c.name for c in own_deployment.pool_containers()}
    assert run_dir.is_dir()


def test_a_job_with_other_limits_never_takes_a_pooled_container(own_deployment) -> None:
    PoolKeeper(own_deployment, engine="host-a").tick()
    shape = default_shape()
    bigger = ContainerShape(**{**shape.__dict__, "memory_limit": "256m"})
    code = (
        "import os\n"
        "v1 = '/sys/fs/cgroup/memory/memory.limit_in_bytes'\n"
        "print(open(v1).read().strip() if os.path.exists(v1) else open('/sys/fs/cgroup/memory.max').read().strip())\n"
    )
    result = own_deployment.run(spec(bigger, code, warm_pool=True))
    assert (result.warm, result.stdout) == (False, f"{256 * 1024 * 1024}\n")
    assert len(ready(own_deployment)) == 2  # untouched


def test_the_timeout_counts_from_when_the_code_starts_not_from_the_containers_start(own_deployment) -> None:
    own_deployment.pool_start(default_shape(), "default")
    time.sleep(2.5)  # the pooled container has been up longer than the job's timeout
    code = "import time; time.sleep(1); print('done')"
    result = own_deployment.run(spec(default_shape(), code, timeout=2, warm_pool=True))
    assert (result.warm, result.timed_out, result.stdout) == (True, False, "done\n")
    own_deployment.pool_start(default_shape(), "default")
    result = own_deployment.run(spec(default_shape(), "import time; time.sleep(5)", timeout=2, warm_pool=True))
    assert (result.warm, result.timed_out) == (True, True)
    assert 2000 <= result.execution_ms < 4000


def test_concurrent_jobs_never_share_a_pooled_container(own_deployment) -> None:
    own_deployment.pool_start(default_shape(), "default")
    specs = [spec(default_shape(), f"print({n})", warm_pool=True) for n in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(own_deployment.run, specs))
    assert [r.stdout for r in results] == [f"{n}\n" for n in range(4)]
    assert sum(1 for r in results if r.warm) == 1


def test_changed_limits_or_size_replace_or_drain_the_pool(own_deployment) -> None:
    Environment.objects.exclude(name="default").update(pool_size=0)  # default's pool alone (not strict's)
    keeper = PoolKeeper(own_deployment, engine="host-a")
    keeper.tick()
    old = {c.pool_key for c in ready(own_deployment)}
    Environment.objects.filter(name="default").update(memory_limit="256m")
    keeper.tick()
    now = ready(own_deployment)
    assert len(now) == 2 and not ({c.pool_key for c in now} & old)  # none of the old shape is left
    Environment.objects.filter(name="default").update(pool_size=0)
    keeper.tick()
    assert ready(own_deployment) == []
    assert not PoolState.objects.filter(engine="host-a").exists()


def test_an_idle_pool_shrinks_to_one_and_the_host_cap_holds(own_deployment, settings) -> None:
    Environment.objects.exclude(name="default").update(pool_size=0)  # default's pool alone (not strict's)
    Environment.objects.filter(name="default").update(pool_size=3)
    keeper = PoolKeeper(own_deployment, engine="host-a")
    settings.TAKO_POOL_MAX_CONTAINERS = 2
    keeper.tick()
    assert len(ready(own_deployment)) == 2  # the host's cap, not the size of 3
    settings.TAKO_POOL_IDLE_SECONDS = 10
    keeper.started_at -= timedelta(seconds=60)  # no job for a minute
    keeper.tick()
    assert len(ready(own_deployment)) == 1


def test_the_keeper_drains_its_pool_when_stopped(own_deployment) -> None:
    stop = threading.Event()
    keeper = PoolKeeper(own_deployment, engine="host-a")
    thread = threading.Thread(target=keeper.run, args=(stop,))
    thread.start()
    wait_for(lambda: len(ready(own_deployment)) == 2, timeout=30, what="the pool to fill")
    taken = own_deployment.run(spec(default_shape(), "print(1)", warm_pool=True))
    assert taken.warm
    wait_for(lambda: len(ready(own_deployment)) == 2, timeout=10, what="the keeper to replace the taken one")
    stop.set()
    thread.join(timeout=30)
    assert own_deployment.pool_containers() == []


def test_reaping_leaves_ready_containers_but_stops_a_dead_workers_pooled_run(own_deployment) -> None:
    own_deployment.pool_start(default_shape(), "default")
    own_deployment.pool_start(default_shape(), "default")
    execution = execution_create(code="x", input_data={}, environment=Environment.objects.get(name="default"))
    Execution.objects.filter(pk=execution.pk).update(status="failed")
    taken = own_deployment._take_pooled(spec(default_shape(), "x", execution_id=str(execution.pk)))
    assert taken is not None
    assert str(execution.pk) in own_deployment.running_executions()
    assert containers_of(str(execution.pk))
    assert containers_reap() == 1  # its execution is not running: its container goes
    assert containers_of(str(execution.pk)) == []
    assert len(ready(own_deployment)) == 1  # waiting for a job: not a leftover


def test_the_live_service_serves_from_its_pool_and_reports_it(live_url: str) -> None:
    def default_pool() -> dict[str, Any]:
        return requests.get(f"{live_url}/pool/stats", timeout=5).json()["warm_pool"].get("default", {})

    wait_for(lambda: default_pool().get("ready") == 2, timeout=60, what="the live keeper to fill the pool")
    body = requests.post(f"{live_url}/execute", json={"code": "print('hi')"}, timeout=30).json()
    assert body["success"] is True
    record = requests.get(f"{live_url}/executions/{body['execution_id']}?view=full", timeout=5).json()
    assert record["warm_start"] is True
    wait_for(lambda: default_pool().get("hits", 0) >= 1 and default_pool().get("ready") == 2, timeout=30,
             what="the hit to be counted and the pool refilled")  # fmt: skip
    health = requests.get(f"{live_url}/health", timeout=5).json()
    assert health["warm_pool"]["default"]["target"] == 2
    jobs = requests.get(f"{live_url}/pool/stats", timeout=5).json()
    assert {"pending", "running", "max_workers", "max_queue_size"} <= set(jobs)


def test_a_burst_larger_than_the_pool_all_succeeds(live_url: str) -> None:
    wait_for(
        lambda: (
            requests.get(f"{live_url}/pool/stats", timeout=5).json()["warm_pool"].get("default", {}).get("ready") == 2
        ),
        timeout=60,
        what="a full pool",
    )

    def run(n: int) -> dict[str, Any]:
        return requests.post(f"{live_url}/execute", json={"code": f"print({n})"}, timeout=60).json()

    with ThreadPoolExecutor(6) as pool:
        bodies = list(pool.map(run, range(6)))
    assert [b["stdout"] for b in bodies] == [f"{n}\n" for n in range(6)]
    warm = [Execution.objects.get(pk=b["execution_id"]).warm_start for b in bodies]
    assert warm.count(True) >= 2 and warm.count(False) >= 1  # the pool served some; the rest ran cold


def test_the_keeper_survives_the_engine_going_away_and_refills_when_it_returns(own_deployment, tmp_path) -> None:
    """The engine stops under a running keeper (every call fails: connections refused and cut);
    the keeper keeps going, backing off, and fills the pool again soon after the engine is back."""
    from executions.sandbox.docker import DockerSandbox
    from tests.dockerproxy import DockerProxy

    proxy = DockerProxy(tmp_path / "docker.sock")
    proxy.up()
    client = docker.DockerClient(base_url=proxy.url, version="1.41", timeout=10)
    through_proxy = DockerSandbox(own_deployment.config, client=client)
    stop = threading.Event()
    keeper = PoolKeeper(through_proxy, engine="host-a")
    thread = threading.Thread(target=keeper.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: len(ready(own_deployment)) == 2, timeout=60, what="the pool to fill")
        proxy.down()
        own_deployment.pool_remove(ready(own_deployment))  # what a daemon restart leaves: no pool
        time.sleep(6)  # several failing rounds
        assert thread.is_alive()
        proxy.up()
        back = time.monotonic()
        wait_for(lambda: len(ready(own_deployment)) == 2, timeout=30, what="the pool to refill")
        print(f"pool refilled {time.monotonic() - back:.1f} s after the engine returned")
    finally:
        stop.set()
        proxy.up()
        thread.join(timeout=30)
    assert not thread.is_alive()


WEIGHTS = {True: {"1024\n", "39\n"}, False: {"256\n", "10\n"}}  # quick, long: cgroup v1 shares, v2 weight


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "long"])
def test_a_job_takes_a_container_of_its_own_cpu_weight_first_else_one_changed_to_it(own_deployment, quick) -> None:
    shape = default_shape()
    own_deployment.pool_start(shape, "default", quick=not quick)
    own_deployment.pool_start(shape, "default", quick=quick)
    first = own_deployment.run(spec(shape, CPU_WEIGHT, warm_pool=True, quick=quick))
    assert first.warm and first.stdout in WEIGHTS[quick]
    assert [c.pool_key for c in ready(own_deployment)] == [shape.pool_key_for(not quick)]  # its own weight's went
    second = own_deployment.run(spec(shape, CPU_WEIGHT, warm_pool=True, quick=quick))
    assert second.warm and second.stdout in WEIGHTS[quick]  # the other weight's, changed before the code ran
    assert ready(own_deployment) == []


def test_long_jobs_get_a_pool_at_their_weight_after_they_ran(own_deployment) -> None:
    Environment.objects.filter(name="data-processing").update(pool_size=0)
    keeper = PoolKeeper(own_deployment, engine="host-a")
    keeper.tick()
    shape = default_shape()
    assert sorted(c.pool_key for c in ready(own_deployment)) == [shape.pool_key] * 2  # no long jobs: quick only
    now = timezone.now()
    for started, ended in [(30, 5), (25, 10), (20, 15)]:  # three long jobs, at most 3 at once
        long_job_ran(now, started, ended)
    keeper = PoolKeeper(own_deployment, engine="host-a")  # (a new one reads the demand now)
    keeper.tick()
    keys = sorted(c.pool_key for c in ready(own_deployment))
    assert keys == sorted([shape.pool_key] * 2 + [shape.pool_key_for(False)] * 2)  # within pool_size 2
    state = PoolState.objects.get(engine="host-a", environment="default")
    assert (state.target, state.ready) == (4, 4)  # the two weights as one pool


def test_a_long_job_that_found_no_container_of_its_weight_gets_its_pool_started_at_once(own_deployment) -> None:
    Environment.objects.filter(name="data-processing").update(pool_size=0)
    keeper = PoolKeeper(own_deployment, engine="host-a")
    keeper.tick()  # no long jobs yet: quick containers only (the demand is read again in 10 s)
    shape = default_shape()
    assert {c.pool_key for c in ready(own_deployment)} == {shape.pool_key}
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(
            own_deployment.run, spec(shape, "import time; time.sleep(3)", warm_pool=True, quick=False)
        )
        wait_for(lambda: [c for c in own_deployment.pool_containers() if c.state == "in_use"], what="the job's start")
        keeper.tick()  # the same keeper, its read of the demand still fresh
        assert shape.pool_key_for(False) in {c.pool_key for c in ready(own_deployment)}
        assert running.result(timeout=30).warm


def test_the_keeper_starts_missing_containers_side_by_side(own_deployment, monkeypatch) -> None:
    """Replacements start STARTS_AT_ONCE at a time on the engine, not one after another."""
    from executions.services import pool as keeper_module

    Environment.objects.filter(name="data-processing").update(pool_size=0)
    Environment.objects.filter(name="default").update(pool_size=4)
    under_way: list[int] = []
    most = [0]
    lock = threading.Lock()
    real_start = type(own_deployment).pool_start

    def observed_start(self, *args, **kwargs):
        with lock:
            under_way.append(1)
            most[0] = max(most[0], len(under_way))
        try:
            return real_start(self, *args, **kwargs)
        finally:
            with lock:
                under_way.pop()

    monkeypatch.setattr(type(own_deployment), "pool_start", observed_start)
    PoolKeeper(own_deployment, engine="host-a").tick()
    assert len(ready(own_deployment)) == 4
    assert most[0] == keeper_module.STARTS_AT_ONCE == 2


def test_after_a_failed_start_the_keeper_tries_no_more_this_round(own_deployment, monkeypatch) -> None:
    """An engine that failed one start would fail the rest (or hang each up to its timeout)."""
    from executions.sandbox import SandboxUnavailable

    Environment.objects.filter(name="data-processing").update(pool_size=0)
    Environment.objects.filter(name="default").update(pool_size=6)
    attempts: list[int] = []

    def failing_start(self, *args, **kwargs):
        attempts.append(1)
        time.sleep(0.2)  # (the other start under way ends too)
        raise SandboxUnavailable("Starting a pooled container: the engine is away")

    monkeypatch.setattr(type(own_deployment), "pool_start", failing_start)
    with pytest.raises(SandboxUnavailable):
        PoolKeeper(own_deployment, engine="host-a").tick()
    assert 1 <= len(attempts) <= 2  # the ones under way when the first failed; of six missing


def test_a_full_host_makes_room_for_a_pool_that_has_none(own_deployment, settings) -> None:
    """The host's cap is shared out in turn: quick work's pool filling it must not leave long jobs
    none once they come (each would wait for the engine to change a quick one's weight)."""
    Environment.objects.exclude(name="default").update(pool_size=0)
    Environment.objects.filter(name="default").update(pool_size=5)
    settings.TAKO_POOL_MAX_CONTAINERS = 5
    keeper = PoolKeeper(own_deployment, engine="host-a")
    keeper.tick()
    shape = default_shape()
    assert [c.pool_key for c in ready(own_deployment)] == [shape.pool_key] * 5  # all the host holds
    now = timezone.now()
    long_job_ran(now, 20, 10)
    keeper = PoolKeeper(own_deployment, engine="host-a")  # (a new one reads the demand now)
    keeper.tick()
    keys = sorted(c.pool_key for c in ready(own_deployment))
    assert keys == sorted([shape.pool_key] * 4 + [shape.pool_key_for(False)])
    state = PoolState.objects.get(engine="host-a", environment="default")
    assert (state.target, state.ready) == (6, 5)  # what it wants, what the host holds


def test_a_take_rewrites_only_its_environments_pool_figures(own_deployment, monkeypatch) -> None:
    from executions.services import pool as keeper_module

    monkeypatch.setattr(keeper_module, "PUBLISH_EVERY_SECONDS", 600.0)  # (no sign-of-life rewrite meanwhile)
    Environment.objects.exclude(name__in=["default", "data-processing"]).update(pool_size=0)
    Environment.objects.filter(name="data-processing").update(pool_size=1, preload=[])
    keeper = PoolKeeper(own_deployment, engine="host-a")
    keeper.tick()
    before = dict(PoolState.objects.filter(engine="host-a").values_list("environment", "updated_at"))
    assert set(before) == {"default", "data-processing"}
    assert own_deployment.run(spec(default_shape(), "print(1)", warm_pool=True)).warm
    keeper.tick()
    after = dict(PoolState.objects.filter(engine="host-a").values_list("environment", "updated_at"))
    assert after["data-processing"] == before["data-processing"]  # unchanged: not written
    assert after["default"] > before["default"]
    assert PoolState.objects.get(engine="host-a", environment="default").ready == 2


def test_a_take_rings_the_doorbell_and_the_keeper_replaces_it_with_no_engine_event(own_deployment, monkeypatch) -> None:
    """A job's take wakes the keeper through the pool's doorbell (no rename, no engine event): with
    the engine's events silent and its periodic tick a minute away, the replacement still starts."""
    from executions.services import pool as keeper_module

    Environment.objects.exclude(name="default").update(pool_size=0)
    monkeypatch.setattr(keeper_module, "TICK_SECONDS", 60.0)
    stop = threading.Event()
    monkeypatch.setattr(type(own_deployment), "pool_changes", lambda self: iter(lambda: stop.wait(), True))
    keeper = PoolKeeper(own_deployment, engine="host-a")
    thread = threading.Thread(target=keeper.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: len(ready(own_deployment)) == 2, timeout=60, what="the pool to fill")
        before = {c.name for c in ready(own_deployment)}
        result = own_deployment.run(spec(default_shape(), "print(6 * 7)", warm_pool=True))
        assert (result.warm, result.stdout) == (True, "42\n")
        refilled = wait_for(
            lambda: len(names := {c.name for c in ready(own_deployment)}) == 2 and names != before and names,
            timeout=20,
            what="the taken container's replacement",
        )
        assert len(refilled & before) == 1
    finally:
        stop.set()
        keeper.wake.set()  # (its tick is a minute away)
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_take_with_no_keeper_listening_neither_blocks_nor_fails(own_deployment) -> None:
    PoolKeeper(own_deployment, engine="host-a").tick()  # (no keeper runs: nobody holds the doorbell)
    began = time.monotonic()
    result = own_deployment.run(spec(default_shape(), "print(1)", warm_pool=True))
    assert (result.warm, result.stdout) == (True, "1\n")
    assert time.monotonic() - began < 10


@pytest.mark.parametrize("others_ready", [True, False], ids=["others-ready", "the-last-one"])
def test_the_keeper_hears_of_a_take_after_the_run_unless_the_pool_is_empty(own_deployment, monkeypatch, others_ready):
    """A replacement's start costs the engine hundreds of ms of CPU: while others are ready it waits
    for the job's end, so as not to slow the job; a take that empties the pool calls for it at once."""
    from executions.sandbox.docker.pool import WarmPool

    Environment.objects.exclude(name="default").update(pool_size=0)
    Environment.objects.filter(name="default").update(pool_size=2 if others_ready else 1)
    PoolKeeper(own_deployment, engine="host-a").tick()
    rings: list[float] = []
    real_ring = WarmPool._ring
    monkeypatch.setattr(WarmPool, "_ring", lambda self: (rings.append(time.monotonic()), real_ring(self)))
    began = time.monotonic()
    result = own_deployment.run(spec(default_shape(), "import time; time.sleep(1.5); print('done')", warm_pool=True))
    ended = time.monotonic()
    assert (result.warm, result.stdout) == (True, "done\n")
    wait_for(lambda: rings, timeout=5, what="the keeper called")
    assert len(rings) == 1
    if others_ready:
        assert rings[0] >= ended  # after the run, once its result is back (ENGINE_WORK_DELAY_SECONDS)
    else:
        assert rings[0] < began + 1.5 <= ended  # at the take, before the run's end
