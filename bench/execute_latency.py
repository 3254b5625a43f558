"""Speed of running print(1), side by side in one run: the service's paths beside a bare `docker run`.

Starts two copies of the service on free loopback ports, each with its own SQLite file and its own
container label (daphne + a worker cluster of TAKO_MAX_WORKERS, the machine's default): one with
the warm pool off (every job starts its container cold) and one as shipped (the `default`
environment keeps 2 containers warm). Then measures, alternating the variants so that all see the
same machine:
  1. sequential latency (p50/p90) of: bare `docker run --rm` through the SDK, POST /execute cold,
     POST /execute with the pool, and async submit + wait (pool on), each as a ratio to bare;
  2. throughput at 4 concurrent clients, in jobs/s and as a ratio to bare `docker run`;
  3. a burst of 8 requests at once (4 times the pool), cold and with the pool;
  4. queue pick-up: submit -> the job's container starts (async, one job at a time);
  5. the CPU the idle service uses (all its processes, over 10 s, after the pool has filled).
The pool rows say how many jobs got a pooled container (the rest found it empty and ran cold).
Usage: python bench/execute_latency.py [-n 40] [--jobs 40]
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
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "tako-vm-default:latest"
CLIENTS = 4


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

    def pool_ready(self) -> int:
        with urllib.request.urlopen(f"{self.url}/pool/stats", timeout=10) as response:
            return int(json.load(response)["warm_pool"].get("default", {}).get("ready", 0))

    def query(self, sql: str, *params: str) -> list[tuple]:
        with sqlite3.connect(Path(self.data_dir) / "tako.sqlite3") as db:
            return db.execute(sql, params).fetchall()

    def cpu_seconds(self) -> float:
        """User + system CPU of every process of this service (each started in its own session)."""
        sessions = {p.pid for p in self.processes}
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) in sessions:  # field 6 of stat: the session id
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def _bare_run(client: docker.DockerClient) -> None:
    out = client.containers.run(IMAGE, ["python3", "-c", "print(1)"], remove=True, network_mode="none")
    assert out == b"1\n", out


def _sync_run(service: Service) -> None:
    body = _post(service.url, "/execute", {"code": "print(1)"})
    assert body["success"] and body["stdout"] == "1\n", body


def _async_run(service: Service) -> None:
    job_id = _post(service.url, "/execute/async", {"code": "print(1)"})["job_id"]
    with urllib.request.urlopen(f"{service.url}/jobs/{job_id}/result?wait=true&timeout=120", timeout=130) as response:
        body = json.load(response)
    assert body["status"] == "succeeded" and body["stdout"] == "1\n", body


def _timed(fn: Callable[[], None]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def _throughput(fn: Callable[[], None], jobs: int) -> float:
    began = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(lambda _: fn(), range(jobs)))
    return jobs / (time.perf_counter() - began)


def _hit_rate(service: Service, since: str) -> str:
    rows = service.query("SELECT warm_start FROM executions_execution WHERE created_at >= ?", since)
    hits = sum(1 for (warm,) in rows if warm)
    return f"pool hits {hits}/{len(rows)}"


def _now(service: Service) -> str:
    return service.query("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')")[0][0]


def _wait_for_full_pool(service: Service, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while service.pool_ready() < 2:
        if time.monotonic() > deadline:
            raise SystemExit("the warm pool did not fill")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=40, help="sequential requests per variant (at least 30)")
    parser.add_argument("--jobs", type=int, default=40, help="jobs per throughput measurement")
    args = parser.parse_args()
    client = docker.from_env(version="auto")
    with tempfile.TemporaryDirectory(prefix="tako-bench-") as cold_dir, tempfile.TemporaryDirectory() as pool_dir:
        cold, pooled = Service("cold", cold_dir), Service("pool", pool_dir)
        cold.start(TAKO_POOL_ENABLED="0")
        pooled.start()
        try:
            _wait_for_full_pool(pooled)
            for _ in range(3):  # warm every path up
                _bare_run(client)
                _sync_run(cold)
                _sync_run(pooled)
                _async_run(pooled)
            variants: dict[str, Callable[[], None]] = {
                "bare docker run (SDK)": lambda: _bare_run(client),
                "POST /execute, cold": lambda: _sync_run(cold),
                "POST /execute, warm pool": lambda: _sync_run(pooled),
                "async submit+wait, warm pool": lambda: _async_run(pooled),
            }
            latency: dict[str, list[float]] = {name: [] for name in variants}
            notes = {name: "" for name in variants}
            since = _now(pooled)
            for _ in range(max(args.n, 30)):
                for name, run in variants.items():
                    latency[name].append(_timed(run))
            notes["POST /execute, warm pool"] = _hit_rate(pooled, since) + " (this and the async row)"

            rates: dict[str, float] = {}
            rate_notes = {name: "" for name in variants}
            for name, run in variants.items():
                if name != "bare docker run (SDK)":
                    _wait_for_full_pool(pooled)
                since = _now(pooled)
                rates[name] = _throughput(run, args.jobs)
                if "pool" in name:
                    rate_notes[name] = _hit_rate(pooled, since)

            bursts: dict[str, list[float]] = {"cold": [], "warm pool": []}
            for _ in range(3):  # 8 requests at once, 4 times the pool: the rest must not be slower than cold
                for name, service in (("cold", cold), ("warm pool", pooled)):
                    _wait_for_full_pool(pooled)
                    with ThreadPoolExecutor(8) as pool:
                        bursts[name] += list(pool.map(lambda _, s=service: _timed(lambda: _sync_run(s)), range(8)))

            pickup = []
            for _ in range(20):  # one job at a time, the pool full: nothing queues behind another job
                _wait_for_full_pool(pooled)
                job_id = _post(pooled.url, "/execute/async", {"code": "print(1)"})["job_id"]
                urllib.request.urlopen(f"{pooled.url}/jobs/{job_id}/result?wait=true", timeout=130).read()
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

    reference = statistics.median(latency["bare docker run (SDK)"])
    print(f"print(1) on {os.cpu_count()} cores; sequential: {len(latency['bare docker run (SDK)'])} runs each")
    print(f"{'variant':<30} {'p50 ms':>8} {'p90 ms':>8}  {'vs bare':>7}")
    for name, samples in latency.items():
        p50, p90 = statistics.median(samples), statistics.quantiles(samples, n=10)[-1]
        print(f"{name:<30} {p50 * 1000:8.1f} {p90 * 1000:8.1f}  {p50 / reference:6.2f}x  {notes[name]}")
    print()
    print(f"throughput, {CLIENTS} concurrent clients, {args.jobs} jobs each")
    print(f"{'variant':<30} {'jobs/s':>8}  {'vs bare':>7}")
    bare_rate = rates["bare docker run (SDK)"]
    for name, rate in rates.items():
        print(f"{name:<30} {rate:8.2f}  {rate / bare_rate:6.2f}x  {rate_notes[name]}")
    print()
    print("burst of 8 POST /execute at once (pool of 2), 3 bursts:", end="")
    for name, samples in bursts.items():
        print(f"  {name}: p50 {statistics.median(samples) * 1000:.0f} ms, max {max(samples) * 1000:.0f} ms", end="")
    print()
    warm_pickup = [ms for ms, warm in pickup if warm]
    pickup_p50 = statistics.median(ms for ms, _ in pickup)
    print(f"queue pick-up, submit -> container start, one job at a time: p50 {pickup_p50:.0f} ms", end="")
    print(f" ({len(warm_pickup)}/{len(pickup)} from the pool)")
    print(f"idle service CPU (daphne, worker cluster, pool keeper): {idle_cpu * 100:.1f}% of one core")


if __name__ == "__main__":
    main()
