"""Speed of running print(1), side by side in one run: the service's paths beside a bare `docker run`.

Starts two copies of the service on free loopback ports, each with its own SQLite file and its own
container label (daphne + a worker cluster of TAKO_MAX_WORKERS, the machine's default): one with
the warm pool off (every job starts its container cold) and one as shipped (the `default`
environment's pool sized from its demand). Each client keeps its HTTP connection between requests,
as Tako VM's own client does. Prints the machine (cores, memory, kernel, Docker), then measures,
alternating the variants so that all see the same machine:
  1. sequential latency (p50/p95) of: bare `docker run --rm` through the SDK, POST /execute cold,
     POST /execute with the pool, and async submit + wait (pool on), each as a ratio to bare, and
     async over sync; each run starts on a settled engine (the pools refilled, the containers of
     the runs before it removed, the CPUs quiet), as a lone request would find it;
  2. where a warm POST /execute's time goes, step by step, from its Server-Timing header (the
     rest, outside the view: HTTP, routing, auth, validation, rendering);
  3. throughput at 4 concurrent clients, in jobs/s and as a ratio to bare `docker run`, with the
     CPU per job of the engine (dockerd, containerd, shims) and of the service, read from /proc;
  4. a burst of 8 requests at once, cold and with the pool;
  5. queue pick-up: submit -> the job's container starts (async, one job at a time, each on a settled engine);
  6. the CPU the idle service uses (all its processes, over 10 s, after the pool has filled);
  7. the engine API calls per job (bench/engine_calls.py), on a third service started afterwards.
The pool rows say how many jobs got a pooled container (the rest found it empty and ran cold).
Usage: python bench/execute_latency.py [-n 40] [--jobs 40] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import docker
import requests
from engine_calls import CountingProxy

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "tako-vm-default:latest"
CLIENTS = 4
# The analyst's everyday program, on data-processing (its pool preloads numpy, pandas, matplotlib).
PANDAS = "import pandas as pd; print(pd.DataFrame({'a': [1, 2]}).a.sum())"
PANDAS_JOB_TYPE = "data-processing"
PANDAS_IMAGE = "tako-vm-data-processing:latest"
BARE, WARM, ASYNC = "bare docker run (SDK)", "POST /execute, warm pool", "async submit+wait, warm pool"
STEP_NAMES = {  # the Server-Timing steps (executions/timings.py marks), in words
    "parse": "parse: the request into a job",
    "admit": "admit: quota, queue room, the insert",
    "claim": "claim: the record, queued -> running",
    "spec": "spec: environment, image, breaker",
    "take": "take: a pooled container (its ready file)",
    "send": "send: files, the job line (FIFO)",
    "run": "run: until the launcher's report",
    "monitor": "monitor: its thread stopped",
    "record": "record: the end, in one update",
    "respond": "respond: the body",
}
ENGINE_PROCESSES = ("dockerd", "containerd", "containerd-shim", "runc")  # (comm: 15 characters at most)


@dataclass
class Service:
    name: str
    data_dir: str
    url: str = ""
    processes: list[subprocess.Popen] = field(default_factory=list)

    def start(self, **env: str) -> None:
        environment = {
            **os.environ,
            "TAKO_DATA_DIR": self.data_dir,
            "TAKO_DEPLOYMENT_ID": f"bench-{self.name}-{os.getpid()}",
            "TAKO_LOG_LEVEL": "WARNING",
            "TAKO_ALLOW_ANONYMOUS": "1",
            "TAKO_RATE_LIMIT_PER_MINUTE": "0",
            **env,
        }
        # (`default`'s pool is sized from its demand, as a deployment's is)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=environment, check=True)
        port = _free_port()
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
        daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "takoweb.asgi:application"]
        self.processes = [
            subprocess.Popen(daphne, cwd=ROOT, env=environment, **quiet),  # type: ignore[call-overload]
            subprocess.Popen([sys.executable, "manage.py", "tako_worker"], cwd=ROOT, env=environment, **quiet),  # type: ignore[call-overload]
        ]
        self.url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"the {self.name} service did not start")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=60)

    def pools(self) -> dict[str, dict[str, int]]:
        with urllib.request.urlopen(f"{self.url}/pool/stats", timeout=10) as response:
            return dict(json.load(response)["warm_pool"])

    def pool_full(self, pools: dict[str, dict[str, int]] | None = None) -> bool:
        """`default`'s pool holds its whole target (at both CPU weights, once long jobs, the async
        ones, have run), or as much of it as the host's cap lets its keeper start (none starting)."""
        pool = (pools or self.pools()).get("default", {})
        ready, target = pool.get("ready", 0), pool.get("target", 1)
        return ready >= target or (ready >= 1 and pool.get("starting", 1) == 0)

    def query(self, sql: str, *params: str) -> list[tuple]:
        with sqlite3.connect(Path(self.data_dir) / "tako.sqlite3") as db:
            return db.execute(sql, params).fetchall()

    def cpu_seconds(self) -> float:
        """User + system CPU of every process of this service (each started in its own session)."""
        sessions = {p.pid for p in self.processes}
        return sum(ticks for _, session, ticks in _processes().values() if session in sessions) / CLOCK_TICKS


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[str, int, int]]:
    """pid -> (command name, session id, CPU ticks of it and of its children it waited for)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        found[int(stat.parent.name)] = (comm, int(rest[3]), sum(int(t) for t in rest[11:15]))
    return found


class EngineCpu:
    """CPU the engine's processes use meanwhile; samples /proc every 0.1 s, so the CPU of a shim
    that ends (with its container) counts up to its last sample."""

    def __init__(self) -> None:
        self._seen: dict[int, int] = {}
        self._first = self._engine()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    @staticmethod
    def _engine() -> dict[int, int]:
        return {pid: ticks for pid, (comm, _, ticks) in _processes().items() if comm.startswith(ENGINE_PROCESSES)}

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self._seen |= self._engine()

    def seconds(self) -> float:
        self._stop.set()
        self._thread.join()
        self._seen |= self._engine()
        return sum(ticks - self._first.get(pid, 0) for pid, ticks in self._seen.items()) / CLOCK_TICKS


@dataclass
class Throughput:
    rate: float  # jobs/s
    engine_ms: float  # CPU per job
    service_ms: float


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_clients = threading.local()


def _session() -> requests.Session:
    """This client thread's HTTP session: its connection is kept between requests, as Tako VM's
    own client (PyPI tako-vm) keeps its pooled requests.Session's (and the docker SDK its own)."""
    if not hasattr(_clients, "session"):
        _clients.session = requests.Session()
    return _clients.session


def _post(url: str, path: str, body: dict) -> dict:
    response = _session().post(f"{url}{path}", json=body, timeout=120)
    response.raise_for_status()
    return dict(response.json())


def _bare_run(client: docker.DockerClient, image: str = IMAGE, code: str = "print(1)", expect: str = "1\n") -> None:
    out = client.containers.run(image, ["python3", "-c", code], remove=True, network_mode="none")
    assert out == expect.encode(), out


def _sync_run(
    service: Service, code: str = "print(1)", job_type: str = "default", expect: str = "1\n"
) -> dict[str, float]:
    """Runs `code` (print(1)) through POST /execute; its Server-Timing steps, in ms."""
    response = _session().post(f"{service.url}/execute", json={"code": code, "job_type": job_type}, timeout=120)
    body, timing = response.json(), response.headers.get("Server-Timing", "")
    assert body["success"] and body["stdout"] == expect, body
    steps = (step.split(";dur=") for step in timing.split(", ") if ";dur=" in step)
    return {name: float(ms) for name, ms in steps}


def _async_run(service: Service) -> None:
    job_id = _post(service.url, "/execute/async", {"code": "print(1)"})["job_id"]
    body = _session().get(f"{service.url}/jobs/{job_id}/result?wait=true&timeout=120", timeout=130).json()
    assert body["status"] == "succeeded" and body["stdout"] == "1\n", body


def _timed(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def _throughput(fn: Callable[[], object], jobs: int, service: Service | None = None) -> Throughput:
    """`jobs` runs of `fn` from CLIENTS threads; CPU per job of the engine and of `service` (None:
    of this process, the bare runs' client)."""
    engine = EngineCpu()
    own = service.cpu_seconds() if service else time.process_time()
    began = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(lambda _: fn(), range(jobs)))
    elapsed = time.perf_counter() - began
    own = (service.cpu_seconds() if service else time.process_time()) - own
    return Throughput(jobs / elapsed, engine.seconds() * 1000 / jobs, own * 1000 / jobs)


def _hit_rate(service: Service, since: str) -> str:
    rows = service.query("SELECT warm_start FROM executions_execution WHERE created_at >= ?", since)
    hits = sum(1 for (warm,) in rows if warm)
    return f"pool hits {hits}/{len(rows)}"


def _now(service: Service) -> str:
    return service.query("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")[0][0]


def _wait_for_preloaded_pool(service: Service, timeout: float = 300) -> None:
    """data-processing's preload checked on its image, and one of its pooled containers ready."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"{service.url}/job-types/{PANDAS_JOB_TYPE}", timeout=10) as response:
            state = json.load(response)["preload_status"]["state"]
        with urllib.request.urlopen(f"{service.url}/pool/stats", timeout=10) as response:
            ready = json.load(response)["warm_pool"].get(PANDAS_JOB_TYPE, {}).get("ready", 0)
        if state == "ok" and ready >= 1:
            return
        if state == "failed" or time.monotonic() > deadline:
            raise SystemExit(f"data-processing's preloaded pool is not ready (preload {state}, {ready} ready)")
        time.sleep(0.5)


QUIET_BUSY = 0.15  # the machine counts as quiet below this share of its CPUs busy, over 0.1 s


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


QUIET_WAIT_SECONDS = 5.0  # at most; a machine busy with something else is said so, once


def _wait_for_quiet_cpu() -> None:
    deadline = time.monotonic() + QUIET_WAIT_SECONDS
    while time.monotonic() < deadline:
        busy, total = _cpu_times()
        time.sleep(0.1)
        busy_after, total_after = _cpu_times()
        if (busy_after - busy) < QUIET_BUSY * max(1, total_after - total):
            return
    if not _noisy:
        _noisy.append(True)
        print(f"(the CPUs were not quiet within {QUIET_WAIT_SECONDS:.0f} s before a run: another load?)", flush=True)


_noisy: list[bool] = []


def _gone(client: docker.DockerClient, summary: dict) -> bool:
    """Listed, yet unknown to the engine: Docker 20.10 can list a removed container as "removing"
    until it restarts (its exit handled after the removal wrote it back to the list)."""
    try:
        client.api.inspect_container(summary["Id"])
    except docker.errors.NotFound:
        return True
    return False


def _settle(client: docker.DockerClient, pooled: Service, timeout: float = 120) -> None:
    """Before each one-at-a-time run: the pools refilled (print(1)'s and the preloaded pandas one),
    their interpreters booted (the machine's CPUs quiet), and every used container gone, so that
    each run, of whichever variant, meets an engine as quiet as a lone request would (not the
    previous variant's refill or teardown)."""
    deadline = time.monotonic() + timeout
    while True:
        pools = pooled.pools()
        full = pooled.pool_full(pools) and pools.get(PANDAS_JOB_TYPE, {}).get("ready", 0) >= 1
        if full and all(c["State"] == "running" or _gone(client, c) for c in client.api.containers(all=True)):
            # A pooled container counts as ready once started; its interpreter then boots (tens of
            # ms of CPU, a second with pandas preloaded): a lone request finds the machine quiet.
            _wait_for_quiet_cpu()
            return
        if time.monotonic() > deadline:
            raise SystemExit("the engine did not settle between runs")
        time.sleep(0.05)


def _wait_for_full_pool(service: Service, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not service.pool_full():
        if time.monotonic() > deadline:
            raise SystemExit("the warm pool did not fill")
        time.sleep(0.2)


def engine_calls(jobs: int) -> tuple[dict[str, tuple[int, dict[str, float]]], float]:
    """Engine API calls per job of each path (the pool's refill included), counted on a third
    service whose every process reaches the engine through a CountingProxy; and the calls per
    second of that service idle (the keeper's periodic look), which the per-job figures include."""
    with tempfile.TemporaryDirectory(prefix="tako-bench-") as data_dir:
        proxy = CountingProxy(Path(data_dir) / "engine.sock")
        service = Service("counted", data_dir)
        service.start(DOCKER_HOST=proxy.url)
        try:
            _wait_for_full_pool(service)
            for _ in range(3):
                _sync_run(service)
                _async_run(service)
            counted = {}
            bare = docker.DockerClient(base_url=proxy.url, version="auto")
            paths: tuple[tuple[str, Callable[[], object]], ...] = (
                (BARE, lambda: _bare_run(bare)),
                (WARM, lambda: _sync_run(service)),
                (ASYNC, lambda: _async_run(service)),
            )
            for name, run in paths:
                _wait_for_full_pool(service)
                time.sleep(1)
                proxy.take()
                for _ in range(jobs):
                    run()
                    _wait_for_full_pool(service)  # its replacement started: counted with it
                calls = proxy.take()
                counted[name] = (sum(calls.values()), {call: n / jobs for call, n in calls.most_common()})
            proxy.take()
            time.sleep(10)
            idle = sum(proxy.take().values()) / 10
        finally:
            service.stop()
            proxy.close()
    return counted, idle


def machine() -> str:
    """Cores, memory, kernel, Docker version and runtime: what the figures were measured on."""
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    info = docker.from_env(version="auto").info()
    return (
        f"{os.cpu_count()} cores, {memory_kb / 2**20:.1f} GiB, kernel {os.uname().release}, "
        f"Docker {info.get('ServerVersion')} ({info.get('DefaultRuntime')}, cgroup v{info.get('CgroupVersion')})"
    )


def _percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def _ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.1f} {_percentile(samples, 95) * 1000:8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=40, help="sequential requests per variant (at least 30)")
    parser.add_argument("--jobs", type=int, default=40, help="jobs per throughput measurement")
    parser.add_argument("--rounds", type=int, default=2, help="throughput rounds (median)")
    args = parser.parse_args()
    client = docker.from_env(version="auto")
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="tako-bench-") as cold_dir, tempfile.TemporaryDirectory() as pool_dir:
        cold, pooled = Service("cold", cold_dir), Service("pool", pool_dir)
        cold.start(TAKO_POOL_ENABLED="0")
        pooled.start()
        try:
            _wait_for_full_pool(pooled)
            _wait_for_preloaded_pool(pooled)
            for _ in range(3):  # warm every path up
                _bare_run(client)
                _sync_run(cold)
                _sync_run(pooled)
                _async_run(pooled)
            steps: list[dict[str, float]] = []
            variants: dict[str, Callable[[], object]] = {
                BARE: lambda: _bare_run(client),
                "POST /execute, cold": lambda: _sync_run(cold),
                WARM: lambda: _sync_run(pooled),
                ASYNC: lambda: _async_run(pooled),
            }
            pandas_variants: dict[str, Callable[[], object]] = {
                "pandas: bare docker run": lambda: _bare_run(client, PANDAS_IMAGE, PANDAS, "3\n"),
                "pandas: POST /execute, cold": lambda: _sync_run(cold, PANDAS, PANDAS_JOB_TYPE, "3\n"),
                "pandas: preloaded warm pool": lambda: _sync_run(pooled, PANDAS, PANDAS_JOB_TYPE, "3\n"),
            }
            pandas_latency: dict[str, list[float]] = {name: [] for name in pandas_variants}
            for _ in range(3):
                for run in pandas_variants.values():
                    run()
            latency: dict[str, list[float]] = {name: [] for name in variants}
            notes = {name: "" for name in variants}
            since = _now(pooled)
            for _ in range(max(args.n, 30)):
                for name, run in variants.items():
                    _settle(client, pooled)
                    began = time.perf_counter()
                    answer = run()
                    latency[name].append(time.perf_counter() - began)
                    if name == WARM:
                        steps.append(answer)  # type: ignore[arg-type]
                for name, run in pandas_variants.items():
                    _settle(client, pooled)
                    pandas_latency[name].append(_timed(run))
            notes[WARM] = _hit_rate(pooled, since) + " (this and the async row)"

            rates: dict[str, list[Throughput]] = {name: [] for name in variants}
            rate_notes = {name: "" for name in variants}
            for _ in range(args.rounds):
                for name, run in variants.items():
                    _wait_for_full_pool(pooled)
                    time.sleep(1)  # the keeper's refill is over: its CPU is not counted for this variant
                    since = _now(pooled)
                    service = pooled if name != "POST /execute, cold" else cold
                    rates[name].append(_throughput(run, args.jobs, service if name != BARE else None))
                    if name in (WARM, ASYNC):
                        rate_notes[name] = _hit_rate(pooled, since)

            bursts: dict[str, list[float]] = {"cold": [], "warm pool": []}
            for _ in range(3):  # 8 requests at once, beyond the pool: the rest must not be slower than cold
                for name, service in (("cold", cold), ("warm pool", pooled)):
                    _wait_for_full_pool(pooled)
                    with ThreadPoolExecutor(8) as pool:
                        bursts[name] += list(pool.map(lambda _, s=service: _timed(lambda: _sync_run(s)), range(8)))

            pickup = []
            for _ in range(20):  # one job at a time, on a settled engine, as the rows above: nothing
                _settle(client, pooled)  # queues behind another job, no removal or refill under way
                job_id = _post(pooled.url, "/execute/async", {"code": "print(1)"})["job_id"]
                _session().get(f"{pooled.url}/jobs/{job_id}/result?wait=true", timeout=130).raise_for_status()
                rows = pooled.query(
                    "SELECT (julianday(container_started_at) - julianday(created_at)) * 86400000, warm_start "
                    "FROM executions_execution WHERE id = ?",
                    job_id.replace("-", ""),
                )
                pickup.append(rows[0])

            _wait_for_full_pool(pooled)
            time.sleep(3)  # settle: the keeper has nothing to do, nothing is queued
            began_cpu, began = pooled.cpu_seconds(), time.monotonic()
            time.sleep(10)
            idle_cpu = (pooled.cpu_seconds() - began_cpu) / (time.monotonic() - began)
        finally:
            pooled.stop()
            cold.stop()
    counted, idle_calls = engine_calls(10)

    reference = statistics.median(latency[BARE])
    print(
        f"print(1), one request at a time, {len(latency[BARE])} runs of each variant, alternating,"
        " each on a settled engine (pools refilled, used containers gone, CPUs quiet)"
    )
    print(f"{'variant':<30} {'p50 ms':>8} {'p95 ms':>8}  {'vs bare':>7}")
    for name, samples in latency.items():
        print(f"{name:<30} {_ms(samples)}  {statistics.median(samples) / reference:6.2f}x  {notes[name]}")
    pandas_reference = statistics.median(pandas_latency["pandas: bare docker run"])
    for name, samples in pandas_latency.items():
        print(f"{name:<30} {_ms(samples)}  {statistics.median(samples) / pandas_reference:6.2f}x")
    print(f"  (pandas: {PANDAS!r} on {PANDAS_JOB_TYPE}; ratios to its own bare docker run)")
    ratio = statistics.median(latency[ASYNC]) / statistics.median(latency[WARM])
    print(f"async submit+wait / POST /execute (warm pool), p50: {ratio:.2f}x")
    print()
    print(f"where a warm POST /execute's time goes, {len(steps)} runs (Server-Timing), ms:")
    print(f"  {'step':<46} {'p50':>6} {'p95':>6}")
    outside = [total * 1000 - sum(s.values()) for total, s in zip(latency[WARM], steps, strict=True)]
    for name, samples in [(STEP_NAMES.get(n, n), [s.get(n, 0.0) for s in steps]) for n in steps[-1]] + [
        ("HTTP, routing, auth, validation, rendering", outside)
    ]:
        print(f"  {name:<46} {statistics.median(samples):6.1f} {_percentile(samples, 95):6.1f}")
    print()
    print(f"throughput, {CLIENTS} concurrent clients, {args.jobs} jobs, median of {args.rounds} rounds")
    print(f"{'variant':<30} {'jobs/s':>7} {'vs bare':>8} {'engine CPU':>11} {'service CPU':>12}  (ms per job)")
    bare_rate = statistics.median(t.rate for t in rates[BARE])
    for name, runs in rates.items():
        rate = statistics.median(t.rate for t in runs)
        engine = statistics.median(t.engine_ms for t in runs)
        own = statistics.median(t.service_ms for t in runs)
        print(f"{name:<30} {rate:7.2f} {rate / bare_rate:7.2f}x {engine:11.1f} {own:12.1f}  {rate_notes[name]}")
    print("  (engine: dockerd, containerd and the shims; service: daphne and the worker cluster, or for")
    print("   a bare run the benchmark's own SDK client; both from /proc, other users of the engine included)")
    print()
    print("burst of 8 POST /execute at once, 3 bursts:", end="")
    for name, samples in bursts.items():
        print(f"  {name}: p50 {statistics.median(samples) * 1000:.0f} ms, max {max(samples) * 1000:.0f} ms", end="")
    print()
    warm_pickup = [ms for ms, warm in pickup if warm]
    pickup_p50 = statistics.median(ms for ms, _ in pickup)
    print(f"queue pick-up, submit -> container start, one job at a time, settled: p50 {pickup_p50:.0f} ms", end="")
    print(f" ({len(warm_pickup)}/{len(pickup)} from the pool)")
    print(f"idle service CPU (daphne, worker cluster, pool keeper): {idle_cpu * 100:.1f}% of one core")
    print()
    print("engine API calls per job, print(1) one at a time, the pool's refill included:")
    for name, (total, calls) in counted.items():
        print(f"  {name}: {total / 10:.1f}  (" + ", ".join(f"{call} {n:.1f}" for call, n in calls.items()) + ")")
    print(f"  (the idle service: {idle_calls:.1f} calls/s, the keeper's periodic look, included above)")


if __name__ == "__main__":
    main()
