"""The warm pool's keeper: one per worker host, next to its Docker engine.

It keeps each environment's pooled containers started, within the host's capacity (a count, and
TAKO_POOL_MEMORY of memory held by waiting containers), starts a replacement when a job takes one
(at once when that emptied its pool, else once the job has run: a take rings the pool's doorbell,
and a waiting container's end is among the engine's events, so an idle pool costs no polling),
replaces containers whose image, limits or preload changed, and drains the pool when it stops.

Each environment has two pools: containers waiting at quick work's CPU weight and at long jobs'
(services/lifecycle.py), so that a job takes one of its own weight and no engine call changes it on
the job's way. How many: for quick work, Environment.pool_size while the environment is busy (one
when idle), or with no size set, as many as the quick jobs' demand over the last
TAKO_POOL_IDLE_SECONDS wanted (Demand: their peak concurrency, or the most that started within a
refill's time; at least one); for long jobs, as many as theirs wanted (none without long jobs),
within pool_size. When the host's capacity cannot hold every target, it is shared out one
container per pool in turn.

Pooled interpreters import the environment's preload list once a check on its image found it sound
(services/preload.py). Every few seconds it also removes containers whose job has ended but whose
removal an engine fault interrupted. Which job gets which container is decided on the engine (see
sandbox/docker/pool.py), not here; jobs never wait for the keeper.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections
from django.db.models import F, Q
from django.utils import timezone

from executions.models import Environment, Execution, PoolState, ProcessBeat
from executions.resilience import this_engine
from executions.sandbox import ContainerShape, PooledContainer, Sandbox, SandboxError, SandboxUnavailable, get_sandbox
from executions.services.cleanup import containers_reap
from executions.services.environments import environment_shape
from executions.services.heartbeats import Heartbeat, live_engines
from executions.services.preload import preload_check_due, preload_check_run, resident_bytes

logger = logging.getLogger(__name__)

TICK_SECONDS = 2.0  # also re-checks environments (new sizes, rebuilt images) this often
RETRY_SECONDS = 2.0  # after the engine or the database failed, doubling while it keeps failing …
LONGEST_RETRY_SECONDS = 10.0  # … up to this, so the pool refills soon after the engine is back
PUBLISH_EVERY_SECONDS = 15.0  # the keeper's state is shown as live while it is younger than…
STATE_MAX_AGE_SECONDS = 60.0  # … this; older rows belong to a keeper that is gone
REAP_EVERY_SECONDS = 10.0  # containers whose job ended but whose removal failed (an engine fault) go
CLAIM_STUCK_SECONDS = 30.0  # a claim takes milliseconds; one this old was cut off by an engine fault
DEMAND_EVERY_SECONDS = 10.0  # an environment's recent demand (Demand) is read this often
IMAGE_EVERY_SECONDS = 10.0  # each environment's image is looked up on the engine this often (a rebuild shows then)
PRELOAD_RETRY_SECONDS = 60.0  # a preload check the engine could not run is tried again after this
STARTS_AT_ONCE = 2  # pooled containers started side by side
_STARTS = ThreadPoolExecutor(max_workers=STARTS_AT_ONCE, thread_name_prefix="pool-start")


@dataclass(frozen=True)
class PoolPlan:
    environment: str
    shape: ContainerShape
    quick: bool  # its containers wait at quick work's CPU weight (False: at long jobs')
    target: int
    memory: int  # bytes one of its containers holds while it waits (its interpreter, its preload)

    @property
    def key(self) -> str:
        return self.shape.pool_key_for(self.quick)


class PoolKeeper:
    def __init__(self, sandbox: Sandbox | None = None, engine: str | None = None) -> None:
        self.sandbox = sandbox or get_sandbox()
        self.engine = engine or this_engine()
        self.wake = threading.Event()
        self.started_at = timezone.now()
        self._published: dict[str, tuple[int, int, int, int, int]] = {}
        self._claimed_since: dict[str, float] = {}
        self._reaped_at = 0.0
        self.heartbeat = Heartbeat(ProcessBeat.Role.POOL, engine=self.engine)
        self._published_at = 0.0
        self._demand: dict[tuple[str, bool], tuple[float, int]] = {}  # (environment, quick) -> (read at, wanted)
        self._images: dict[str, tuple[float, str | None]] = {}  # image -> (looked up at, name@sha256:…)
        self._checking: set[tuple[str, str, tuple[str, ...]]] = set()  # preload checks under way
        self._check_failed_at: dict[tuple[str, str, tuple[str, ...]], float] = {}

    def run(self, stop: threading.Event) -> None:
        """Keep the pool until `stop` is set, then drain it."""
        threading.Thread(target=self._watch_engine, args=(stop,), name="pool-events", daemon=True).start()
        threading.Thread(target=self._watch_takes, args=(stop,), name="pool-takes", daemon=True).start()
        self._drain_quietly()  # containers a previous keeper on this host left behind
        failures = 0
        while not stop.is_set():
            pause = TICK_SECONDS
            try:
                self.tick(stop)
                failures = 0
            except Exception as exc:  # no fault of the engine or the database may stop the keeper
                failures += 1
                pause = min(RETRY_SECONDS * 2 ** (failures - 1), LONGEST_RETRY_SECONDS)
                expected = isinstance(exc, SandboxUnavailable | SandboxError | DatabaseError)
                logger.log(
                    logging.WARNING if expected else logging.ERROR,
                    "Warm pool: %s; trying again in %.0f s",
                    exc,
                    pause,
                    exc_info=not expected,
                )
            self._say_alive()
            if failures:  # back off for real: a wake-up from engine events must not cut it short
                stop.wait(pause)
            else:
                self.wake.wait(pause)
            self.wake.clear()
        self._drain_quietly()
        connections.close_all()

    def tick(self, stop: threading.Event | None = None) -> None:
        """One round: remove what is no longer wanted, then start what is missing."""
        self._say_alive()
        if time.monotonic() - self._reaped_at > REAP_EVERY_SECONDS:
            containers_reap()
            self._reaped_at = time.monotonic()
        plans = {plan.key: plan for plan in self._plans()}
        pooled = self.sandbox.pool_containers()
        for container in pooled:  # a job found none of its CPU weight ready: that pool is wanted now,
            plan = plans.get(container.wanted_key)  # not at the next read of the demand
            if plan is not None and plan.target == 0:
                plans[plan.key] = dataclasses.replace(plan, target=1)
                self._demand[(plan.environment, plan.quick)] = (time.monotonic(), 1)
        ready = sorted((c for c in pooled if c.state == "ready"), key=lambda c: c.created, reverse=True)
        now = time.monotonic()
        self._claimed_since = {c.name: self._claimed_since.get(c.name, now) for c in pooled if c.state == "claimed"}
        stuck = {name for name, since in self._claimed_since.items() if now - since > CLAIM_STUCK_SECONDS}
        unwanted = [
            c
            for c in pooled
            if c.state == "dead" or c.name in stuck or (c.state == "ready" and c.pool_key not in plans)
        ]
        room = self._allocate(plans)
        keep: dict[str, list[PooledContainer]] = {key: [] for key in plans}
        for container in ready:  # newest first: the oldest beyond its pool's room go
            group = keep.get(container.pool_key)
            if group is not None and len(group) < room[container.pool_key]:
                group.append(container)
            elif group is not None:
                unwanted.append(container)
        if unwanted:
            self.sandbox.pool_remove(unwanted)
        missing = self._missing(room, keep)
        in_use = {key: sum(1 for c in pooled if c.pool_key == key and c.state == "in_use") for key in plans}
        self._publish(plans, keep, in_use, missing)
        started = self._start(plans, missing, stop)
        if started:  # (jobs that took some meanwhile woke it again: _watch_takes)
            self._publish(plans, keep, in_use, [], started=started)

    def _start(self, plans: dict[str, PoolPlan], missing: list[str], stop: threading.Event | None) -> dict[str, int]:
        """Start the missing containers, STARTS_AT_ONCE at a time: the engine creates and starts
        containers faster side by side than one after another (each waits on runc and the
        kernel part of the time). After a failure the rest are not tried; it is raised once the
        ones under way have ended."""
        started: dict[str, int] = {}
        failures: list[BaseException] = []
        lock = threading.Lock()

        def start(key: str) -> None:
            if failures or (stop is not None and stop.is_set()):  # an engine that failed one fails the rest
                return
            try:
                self.sandbox.pool_start(plans[key].shape, plans[key].environment, quick=plans[key].quick)
            except Exception as exc:
                with lock:
                    failures.append(exc)
                return
            with lock:
                started[key] = started.get(key, 0) + 1

        list(_STARTS.map(start, missing))
        if failures:
            raise failures[0]
        return started

    def _say_alive(self) -> None:
        """This keeper is alive (whether or not its engine works): its pool counts are shown only
        while it beats."""
        self.heartbeat.beat_if_due(time.monotonic())

    def _plans(self) -> list[PoolPlan]:
        if not settings.TAKO_POOL_ENABLED:
            return []
        idle_since = timezone.now() - timedelta(seconds=settings.TAKO_POOL_IDLE_SECONDS)
        plans = []
        for environment in Environment.objects.filter(Q(pool_size__isnull=True) | Q(pool_size__gt=0)):
            # The image jobs run (services/runs.py): the last build's, else the engine's.
            image_ref = environment.image_ref or self._image_ref(environment.image)
            if image_ref is None:
                continue  # not built yet: jobs wait for the build, and so does the pool
            image_id = image_ref.partition("@")[2]
            if preload_check_due(environment, image_id):
                self._check_preload(environment, image_ref)  # meanwhile, its pool has no preload
            shape = environment_shape(environment, image_ref)
            memory = resident_bytes(environment, image_id)
            for quick in (True, False):
                target = self._target(environment, idle_since, quick)
                plans.append(PoolPlan(environment.name, shape, quick, target, memory))
        return plans

    def _image_ref(self, image: str) -> str | None:
        """The image's name@sha256:…, asked of the engine at most every IMAGE_EVERY_SECONDS (the
        keeper ticks on every pooled container a job takes: an inspect per environment each time
        was the largest engine cost of a warm job)."""
        now = time.monotonic()
        looked_at, image_ref = self._images.get(image, (0.0, None))
        if now - looked_at > IMAGE_EVERY_SECONDS or image_ref is None:
            image_ref = self.sandbox.image_ref(image)
            self._images[image] = (now, image_ref)
        return image_ref

    def _target(self, environment: Environment, idle_since: Any, quick: bool) -> int:
        """How many of its containers to keep ready at one CPU weight. Quick work: its fixed size
        while it is busy (one when idle), or with no size set, as many as its recent demand wanted
        (at least one). Long jobs: as many as theirs wanted (none without them), within its size."""
        if environment.pool_size is not None and quick:
            busy = self.started_at > idle_since or (
                Execution.objects.filter(job_type=environment.name, created_at__gte=idle_since).exists()
            )
            return environment.pool_size if busy else min(environment.pool_size, 1)
        now = time.monotonic()
        read_at, wanted = self._demand.get((environment.name, quick), (0.0, 0))
        if now - read_at > DEMAND_EVERY_SECONDS:
            wanted = recent_demand(environment.name, idle_since, quick=quick).containers_wanted
            self._demand[(environment.name, quick)] = (now, wanted)
        if quick:
            return max(1, wanted)
        return wanted if environment.pool_size is None else min(environment.pool_size, wanted)

    def _check_preload(self, environment: Environment, image_ref: str) -> None:
        """Check the environment's preload on this image in the background (one at a time per
        environment, image and list; after an engine fault, again PRELOAD_RETRY_SECONDS later)."""
        key = (environment.name, image_ref, tuple(environment.preload))
        failed_at = self._check_failed_at.get(key)
        if key in self._checking or (failed_at is not None and time.monotonic() - failed_at < PRELOAD_RETRY_SECONDS):
            return
        self._checking.add(key)

        def check() -> None:
            try:
                shape = environment_shape(environment, image_ref, preload=tuple(environment.preload))
                preload_check_run(self.sandbox, environment, shape)
                self.wake.set()  # its pool takes the preload now
            except Exception as exc:  # the engine or the database failed: nothing was recorded
                self._check_failed_at[key] = time.monotonic()
                logger.warning("Warm pool: could not check the preload of %s (%s)", environment.name, exc)
            finally:
                self._checking.discard(key)
                connections.close_all()  # this thread's own connection

        threading.Thread(target=check, name=f"preload-check-{environment.name}", daemon=True).start()

    @staticmethod
    def _allocate(plans: dict[str, PoolPlan]) -> dict[str, int]:
        """How many ready containers each pool may hold: its target, within the host's capacity (a
        count, and the memory waiting containers may hold) shared out one container per pool in
        turn, so that no pool's large target leaves another none (a pool whose containers are in
        the way of another's share loses them: the oldest go)."""
        room = {key: 0 for key in plans}
        count = memory = 0
        placed = True
        while placed:
            placed = False
            for key, plan in plans.items():
                fits = count < settings.TAKO_POOL_MAX_CONTAINERS and memory + plan.memory <= settings.TAKO_POOL_MEMORY
                if room[key] < plan.target and fits:
                    room[key] += 1
                    count += 1
                    memory += plan.memory
                    placed = True
        return room

    @staticmethod
    def _missing(room: dict[str, int], keep: dict[str, list[PooledContainer]]) -> list[str]:
        """The containers to start, one per entry, taking turns between pools."""
        deficits = {key: room[key] - len(keep[key]) for key in room}
        missing = []
        while any(d > 0 for d in deficits.values()):
            for key in deficits:
                if deficits[key] > 0:
                    deficits[key] -= 1
                    missing.append(key)
        return missing

    def _publish(
        self,
        plans: dict[str, PoolPlan],
        keep: dict[str, list[PooledContainer]],
        in_use: dict[str, int],
        missing: list[str],
        started: dict[str, int] | None = None,
    ) -> None:
        """Record this host's pools for pages served elsewhere; writes only the environments whose
        figures changed (and every one as a sign of life every PUBLISH_EVERY_SECONDS)."""
        now = time.monotonic()
        states: dict[str, tuple[int, int, int, int, int]] = {}
        for key, plan in plans.items():  # (an environment's two weights summed)
            ready = len(keep[key]) + (started or {}).get(key, 0)
            target, held, using, starting, resident = states.get(plan.environment, (0, 0, 0, 0, 0))
            states[plan.environment] = (
                target + plan.target,
                held + ready,
                using + in_use[key],
                starting + missing.count(key),
                resident + ready * plan.memory,
            )
        due = now - self._published_at >= PUBLISH_EVERY_SECONDS  # every row, as a sign of life
        changed = {env: state for env, state in states.items() if due or self._published.get(env) != state}
        if not changed and states.keys() == self._published.keys():
            return
        for environment, (target, ready, using, starting, resident) in changed.items():
            # A job's take changes one environment's figures: one UPDATE, not a row per environment.
            figures = {
                "target": target,
                "ready": ready,
                "in_use": using,
                "starting": starting,
                "resident_bytes": resident,
                "updated_at": timezone.now(),
            }
            if not PoolState.objects.filter(engine=self.engine, environment=environment).update(**figures):
                PoolState.objects.update_or_create(engine=self.engine, environment=environment, defaults=figures)
        if due or states.keys() != self._published.keys():
            PoolState.objects.filter(engine=self.engine).exclude(environment__in=states).delete()
        self._published = states
        if due:
            self._published_at = now

    def _watch_takes(self, stop: threading.Event) -> None:
        """Wake the keeper whenever a job on this host takes a pooled container."""
        while not stop.is_set():
            try:
                for _ in self.sandbox.pool_takes(stop):
                    self.wake.set()
                return  # (`stop` is set, or this sandbox tells of takes among its changes)
            except OSError as exc:  # its folder could not be made or opened: the ticks see the takes
                logger.warning("Warm pool: cannot hear takes (%s); trying again", exc)
            stop.wait(RETRY_SECONDS)

    def _watch_engine(self, stop: threading.Event) -> None:
        """Wake the keeper whenever a ready pooled container ends (or is claimed through the engine)."""
        while not stop.is_set():
            try:
                for _ in self.sandbox.pool_changes():
                    self.wake.set()
                    if stop.is_set():
                        return
            except Exception as exc:  # the engine went away mid-stream, in whatever way
                logger.info("Warm pool: engine events unavailable (%s)", exc)
            stop.wait(RETRY_SECONDS)

    def _drain_quietly(self) -> None:
        try:
            # Ready and dead ones only: a "claimed" one may be a job's that is being taken this very
            # moment (its owner not written yet); a fault's leftover goes after CLAIM_STUCK_SECONDS.
            self.sandbox.pool_remove([c for c in self.sandbox.pool_containers() if c.state in ("ready", "dead")])
            PoolState.objects.filter(engine=self.engine).delete()
            self._published = {}
        except Exception as exc:  # draining is best effort: the reaper removes what is left
            logger.warning("Warm pool: could not drain (%s); the reaper will remove its containers", exc)


def pool_stats() -> dict[str, dict[str, Any]]:
    """Each environment's warm pool summed over the worker hosts whose keeper is beating, with the
    hits (jobs that got a pooled container) and misses (jobs that wanted one and ran cold) since
    each keeper started. A keeper that stopped beating counts for nothing."""
    live_since = timezone.now() - timedelta(seconds=STATE_MAX_AGE_SECONDS)
    live_keepers = live_engines(ProcessBeat.Role.POOL)
    pools: dict[str, dict[str, Any]] = {}
    for state in PoolState.objects.filter(updated_at__gte=live_since, engine__in=live_keepers):
        totals = pools.setdefault(state.environment, _empty_stats())
        for name, value in state.to_dict().items():
            totals[name] += value
    return dict(sorted(pools.items()))


COUNTS_FLUSH_SECONDS = 1.0


class _PoolCounts:
    """Hits and misses added up in memory and written by a timer thread at most once a second, so
    counting a run costs its request no statement. The figures lag by up to a second; a process
    killed outright loses its last second of counts (statistics, not records)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str, str], int] = {}
        self._timer: threading.Timer | None = None

    def add(self, engine: str, environment: str, field: str) -> None:
        with self._lock:
            key = (engine, environment, field)
            self._pending[key] = self._pending.get(key, 0) + 1
            if self._timer is None:
                self._timer = threading.Timer(COUNTS_FLUSH_SECONDS, self.flush_quietly)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._timer = None
        for (engine, environment, field), n in pending.items():
            PoolState.objects.filter(engine=engine, environment=environment).update(**{field: F(field) + n})

    def flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # the database is away: these counts are lost, runs are not
            logger.warning("Could not record the pool's hits and misses: %s", exc)
        finally:
            connections.close_all()  # this thread's own connection


_pool_counts = _PoolCounts()
atexit.register(_pool_counts.flush_quietly)  # a process ending normally keeps its last counts


def pool_count(*, environment: str, warm: bool) -> None:
    """Count a run that got a pooled container (warm) or wanted one and started cold."""
    _pool_counts.add(this_engine(), environment, "hits" if warm else "misses")


def pool_counts_flush() -> None:
    """Write the counts added up so far now (tests; a process about to end)."""
    _pool_counts.flush()


def _empty_stats() -> dict[str, Any]:
    return {"target": 0, "ready": 0, "in_use": 0, "starting": 0, "hits": 0, "misses": 0, "resident_bytes": 0}


REFILL_SECONDS = 1.0  # about how long a replacement takes, from its start to an interpreter waiting on a busy engine


@dataclass(frozen=True)
class Demand:
    concurrency: int  # the most jobs that ran at once
    arrivals: int  # the most jobs that started within any REFILL_SECONDS

    @property
    def containers_wanted(self) -> int:
        """Ready containers to serve that demand warm: one per job running at its peak, and one
        per job that arrives before the replacement of the one before it is ready (a script
        running jobs one after another takes containers faster than one refill brings them)."""
        return max(self.concurrency, self.arrivals)


def recent_demand(environment: str, since: Any, *, quick: bool | None = None) -> Demand:
    """The demand on `environment`'s pool (quick jobs, long ones, or with None all) since `since`
    (running jobs count till now)."""
    # Bounded by created_at (indexed): a job that ran after `since` was created at most its longest
    # run (timeout and start-up) before it.
    created_after = since - timedelta(seconds=settings.TAKO_MAX_TIMEOUT + 600)
    runs = (
        Execution.objects.filter(job_type=environment, created_at__gte=created_after, started_at__isnull=False)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=since))
        .filter(Q() if quick is None else Q(quick=quick))
        .order_by("-created_at")
        .values_list("started_at", "ended_at")[:10_000]
    )
    now = timezone.now()
    changes = sorted(
        [(max(started, since), 1) for started, _ in runs] + [(ended or now, -1) for _, ended in runs],
        key=lambda change: (change[0], change[1]),  # an end before a start at the same instant
    )
    peak = running = 0
    for _, step in changes:
        running += step
        peak = max(peak, running)
    starts = sorted(started for started, _ in runs if started is not None and started >= since)
    window = timedelta(seconds=REFILL_SECONDS)
    arrivals = first = 0
    for last, started in enumerate(starts):  # the most starts within any window
        while started - starts[first] >= window:
            first += 1
        arrivals = max(arrivals, last - first + 1)
    return Demand(concurrency=peak, arrivals=arrivals)
