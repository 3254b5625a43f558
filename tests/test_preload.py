"""Preloaded warm pools on the real engine: the check of an environment's preload list, pools whose
interpreters have the modules loaded before a job arrives, the fall-back when a module is missing or
crashes the interpreter, pools sized from demand, and what the API and pages show of it."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from executions.models import Environment, Execution, PoolState
from executions.sandbox import RunSpec, get_sandbox
from executions.services import PoolKeeper
from executions.services.environments import environment_shape
from executions.services.pool import recent_demand
from executions.services.preload import preload_check_run
from tests.support import wait_for

MODULES = ["numpy", "pandas", "matplotlib.pyplot"]
# Prints which of the modules the program found already imported when it began.
LOADED_AT_START = "import sys\nprint(sorted(m for m in ('numpy', 'pandas', 'matplotlib.pyplot') if m in sys.modules))\n"


@pytest.fixture
def data_processing(transactional_db: None, settings: Any, shipped_images: dict[str, str]) -> Environment:
    """data-processing alone in a deployment of its own, pool sized from demand, preloading MODULES."""
    settings.TAKO_DEPLOYMENT_ID = f"preload-test-{uuid.uuid4().hex[:8]}"
    settings.TAKO_POOL_ENABLED = True
    Environment.objects.exclude(name="data-processing").update(pool_size=0)
    Environment.objects.filter(name="data-processing").update(pool_size=None, preload=MODULES, preload_check={})
    yield Environment.objects.get(name="data-processing")
    get_sandbox().remove_stale_containers()


def image_ref_of(environment: Environment) -> str:
    image_ref = get_sandbox().image_ref(environment.image)
    assert image_ref is not None
    return image_ref


def pooled_run(environment: Environment, code: str) -> Any:
    environment.refresh_from_db()
    shape = environment_shape(environment, image_ref_of(environment))
    return get_sandbox().run(
        RunSpec(execution_id=str(uuid.uuid4()), shape=shape, code=code, input_json="{}", timeout=30, warm_pool=True)
    )


def ready_of(pool: str) -> list[Any]:
    return [c for c in get_sandbox().pool_containers() if c.pool == pool and c.state == "ready"]


def test_a_sound_preload_is_checked_then_pooled_interpreters_have_it_loaded(data_processing: Environment) -> None:
    keeper = PoolKeeper(get_sandbox(), engine="host-a")
    keeper.tick()  # starts the check in the background; meanwhile the pool has no preload
    assert len(ready_of("data-processing")) == 1  # sized from demand: none yet, so one
    wait_for(
        lambda: Environment.objects.get(name="data-processing").preload_status["state"] == "ok",
        timeout=120,
        what="the preload check",
    )
    status = Environment.objects.get(name="data-processing").preload_status
    assert status["errors"] == {} and status["failure"] is None
    assert status["resident_bytes"] > 40 * 1024**2  # pandas and matplotlib are in it
    keeper.tick()  # the shape changed (it preloads now): the pool is replaced
    wait_for(lambda: ready_of("data-processing"), timeout=60, what="a preloaded container")
    result = pooled_run(
        data_processing, LOADED_AT_START + "import pandas as pd\nprint(pd.DataFrame({'a': [1, 2]}).a.sum())\n"
    )
    assert result.warm is True
    assert result.stdout == "['matplotlib.pyplot', 'numpy', 'pandas']\n3\n"
    # The pool counts each container at the check's measure. (Another keeper on this database, the
    # session's live service, may have checked the same preload at the same time and recorded its
    # own measure of the same interpreter, a few hundred KB apart: either is the preload's size.)
    counted = PoolState.objects.get(engine="host-a", environment="data-processing").resident_bytes
    latest = Environment.objects.get(name="data-processing").preload_status["resident_bytes"]
    assert counted in {status["resident_bytes"], latest} or abs(counted - latest) <= latest // 100, (counted, latest)


def test_a_cold_run_preloads_as_start_up_not_as_the_programs_time(data_processing: Environment) -> None:
    preload_check_run(
        get_sandbox(),
        data_processing,
        environment_shape(data_processing, image_ref_of(data_processing), preload=tuple(MODULES)),
    )
    data_processing.refresh_from_db()
    shape = environment_shape(data_processing, image_ref_of(data_processing))
    assert ("TAKO_PRELOAD", "numpy,pandas,matplotlib.pyplot") in shape.environment
    result = get_sandbox().run(
        RunSpec(execution_id=str(uuid.uuid4()), shape=shape, code=LOADED_AT_START, input_json="{}", timeout=30)
    )
    assert result.stdout == "['matplotlib.pyplot', 'numpy', 'pandas']\n"
    # The import happened before the code's clock started: the program itself only printed.
    assert result.execution_ms < result.startup_ms


def test_a_missing_module_is_reported_and_the_pool_runs_without_the_preload(
    data_processing: Environment, api: Any, admin_client: Any
) -> None:
    Environment.objects.filter(pk=data_processing.pk).update(preload=["numpy", "no_such_module_here"])
    data_processing.refresh_from_db()
    check = preload_check_run(
        get_sandbox(),
        data_processing,
        environment_shape(data_processing, image_ref_of(data_processing), preload=("numpy", "no_such_module_here")),
    )
    assert list(check["errors"]) == ["no_such_module_here"]
    assert "ModuleNotFoundError" in check["errors"]["no_such_module_here"]
    data_processing.refresh_from_db()
    shape = environment_shape(data_processing, image_ref_of(data_processing))
    assert not any(name == "TAKO_PRELOAD" for name, _ in shape.environment)  # falls back to no preload
    body = api.get("/job-types/data-processing").json()
    assert body["preload"] == ["numpy", "no_such_module_here"]
    assert body["preload_status"]["state"] == "failed"
    assert "no_such_module_here" in body["preload_status"]["errors"]
    page = admin_client.get(reverse("ui-ops") + "?panel=environments").content.decode()
    assert "No module named" in page and "pools run without it" in page
    result = pooled_run(data_processing, "import numpy\nprint(numpy.arange(3).sum())\n")
    assert (result.exit_code, result.stdout) == (0, "3\n")  # runs still work


def test_an_interpreter_the_preload_kills_is_never_handed_a_job(data_processing: Environment) -> None:
    # 48 MB cannot hold numpy, pandas and matplotlib: the kernel kills the interpreter as it imports.
    Environment.objects.filter(pk=data_processing.pk).update(memory_limit="48m")
    data_processing.refresh_from_db()
    crashing = environment_shape(data_processing, image_ref_of(data_processing), preload=tuple(MODULES))
    check = preload_check_run(get_sandbox(), data_processing, crashing)
    assert check["failure"].startswith("Preloading numpy, pandas, matplotlib.pyplot failed: the interpreter ended")
    data_processing.refresh_from_db()
    assert data_processing.preload_status["state"] == "failed"
    # A pooled container started with that preload ends on its own, before any job is sent to it…
    get_sandbox().pool_start(crashing, "data-processing")
    wait_for(
        lambda: [c.state for c in get_sandbox().pool_containers() if c.pool == "data-processing"] == ["dead"],
        timeout=60,
        what="the pooled container whose interpreter died to end",
    )
    # …so no job takes it: this one runs cold, and the keeper removes the dead one.
    result = get_sandbox().run(
        RunSpec(
            execution_id=str(uuid.uuid4()),
            shape=crashing,
            code="pass",
            input_json="{}",
            timeout=30,
            warm_pool=True,
        )
    )
    assert result.warm is False
    PoolKeeper(get_sandbox(), engine="host-a").tick()
    assert "dead" not in [c.state for c in get_sandbox().pool_containers() if c.pool == "data-processing"]


def test_a_pool_sized_from_demand_follows_the_recent_peak(data_processing: Environment, settings: Any) -> None:
    Environment.objects.filter(pk=data_processing.pk).update(preload=[])  # (no check running beside)
    now = timezone.now()
    # Three jobs that ran together a minute ago, and one alone since.
    for started, ended in [(90, 30), (80, 40), (70, 35), (20, 10)]:
        Execution.objects.create(
            code="x",
            job_type="data-processing",
            timeout=30,
            startup_timeout=60,
            status="succeeded",
            started_at=now - timedelta(seconds=started),
            ended_at=now - timedelta(seconds=ended),
        )
    assert recent_demand("data-processing", now - timedelta(seconds=600)).concurrency == 3
    assert recent_demand("data-processing", now - timedelta(seconds=25)).concurrency == 1
    keeper = PoolKeeper(get_sandbox(), engine="host-a")
    settings.TAKO_POOL_MAX_CONTAINERS = 2
    keeper.tick()
    assert PoolState.objects.get(engine="host-a", environment="data-processing").target == 3
    assert len(ready_of("data-processing")) == 2  # the host's cap holds
    settings.TAKO_POOL_MEMORY = 1  # no room for even one more waiting container
    get_sandbox().pool_remove(ready_of("data-processing"))
    keeper.tick()
    assert ready_of("data-processing") == []


def test_a_pool_sized_from_demand_keeps_one_per_job_a_script_starts_within_a_refill(
    data_processing: Environment,
) -> None:
    """A script sending jobs one after another never runs two at once, yet takes a container every
    few hundred ms, faster than one replacement is ready: its pool is sized by those arrivals."""
    Environment.objects.filter(pk=data_processing.pk).update(preload=[])
    now = timezone.now()
    # Six jobs one after another, 0.3 s each: four of them start within any one second at most.
    for n in range(6):
        started = now - timedelta(seconds=30 - 0.3 * n)
        Execution.objects.create(
            code="x",
            job_type="data-processing",
            timeout=30,
            startup_timeout=60,
            status="succeeded",
            started_at=started,
            ended_at=started + timedelta(seconds=0.25),
        )
    demand = recent_demand("data-processing", now - timedelta(seconds=600), quick=True)
    assert (demand.concurrency, demand.arrivals, demand.containers_wanted) == (1, 4, 4)
    PoolKeeper(get_sandbox(), engine="host-a").tick()
    assert PoolState.objects.get(engine="host-a", environment="data-processing").target == 4
    assert len(ready_of("data-processing")) == 4
