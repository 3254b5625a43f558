"""The hot path: a warm POST /execute costs the database a handful of statements.

Counted in every thread of the process (the run and its monitor use connections of their own), not
only in the request's: what the web process sends to the database, end to end. On SQLite:
the environment; admission (BEGIN IMMEDIATE, quota and queue room in one count, the insert); the
claim (one conditional update); the end (one update). Not on it: the breaker (a closed breaker
read within the last HEALTHY_CACHE_SECONDS is not read again, and its successes are not written),
the container's start (recorded for async jobs only), the pool's hit (counted in memory, written
within a second by a timer thread).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db.backends.utils import CursorWrapper

from executions.models import Environment, Execution
from executions.sandbox import get_sandbox
from executions.services import runs
from executions.services.environments import environment_shape
from executions.services.pool import pool_counts_flush

MOST_STATEMENTS = 6


@contextlib.contextmanager
def statements() -> Iterator[list[str]]:
    """Every SQL statement any thread of this process runs meanwhile."""
    seen: list[str] = []
    lock = threading.Lock()
    original = CursorWrapper._execute_with_wrappers

    def counted(self: CursorWrapper, sql: str, params: Any, many: bool, executor: Any) -> Any:
        with lock:
            seen.append(sql)
        return original(self, sql, params, many, executor)

    CursorWrapper._execute_with_wrappers = counted  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        CursorWrapper._execute_with_wrappers = original  # type: ignore[method-assign]


def pooled_default_started() -> None:
    """One ready container in `default`'s pool, as the keeper would have started it."""
    environment = Environment.objects.get(name="default")
    image_ref = get_sandbox().image_ref(environment.image)
    assert image_ref is not None
    get_sandbox().pool_start(environment_shape(environment, image_ref), "default")


@pytest.fixture
def warm_default(api: Any, settings: Any) -> Iterator[Any]:
    """The API, `default`'s pool enabled in a deployment of its own (its leftovers removed after)."""
    settings.TAKO_DEPLOYMENT_ID = f"hot-path-{uuid.uuid4().hex[:8]}"
    settings.TAKO_POOL_ENABLED = True
    yield api
    get_sandbox().remove_stale_containers()


def test_a_warm_sync_run_costs_a_handful_of_statements(warm_default: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pooled_default_started()
    pooled_default_started()
    warm_default.post("/execute", {"code": "print('warm-up')"})  # creates the breaker's row, and reads it
    pool_counts_flush()  # the warm-up's pool hit, written now rather than by the timer mid-count

    # The monitor's writes grow with the run's length (output every tick); a loaded machine must
    # not turn this short run into a longer one here.
    monkeypatch.setattr(runs, "MONITOR_TICK_SECONDS", 5.0)
    with statements() as sql:
        response = warm_default.post("/execute", {"code": "print(6 * 7)"})

    body = response.json()
    assert (response.status_code, body["success"], body["stdout"]) == (200, True, "42\n")
    assert Execution.objects.get(pk=body["execution_id"]).warm_start is True
    listing = "\n".join(sql)
    print(f"{len(sql)} statements:\n{listing}")
    assert len(sql) <= MOST_STATEMENTS, f"{len(sql)} statements:\n{listing}"
