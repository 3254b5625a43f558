"""Speed of running print(1): the service beside a bare `docker run` of the same code, in one run.

Starts the service (daphne + a worker cluster, its own SQLite file in a temporary folder) on a
free loopback port and measures:
  1. sequential latency, alternating the two so both see the same machine:
     bare `docker run --rm` through the SDK, and POST /execute, p50/p90/mean and the ratio;
  2. throughput at 4 concurrent clients: bare `docker run`, POST /execute, and async
     submit + wait with a cluster of 2 and of 4 workers, in jobs/s and as a ratio to bare;
  3. for the async path, the median time from submit to container start.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "tako-vm-default:latest"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(data_dir: str, workers: int) -> dict[str, str]:
    return {**os.environ, "TAKO_DATA_DIR": data_dir, "TAKO_LOG_LEVEL": "WARNING", "TAKO_MAX_WORKERS": str(workers)}


def _start_server(data_dir: str, workers: int) -> tuple[list[subprocess.Popen], str]:
    env = _env(data_dir, workers)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    port = _free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}  # daphne's access log, worker logs
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "takoweb.asgi:application"],
        cwd=ROOT,
        env=env,
        **quiet,
    )
    worker = subprocess.Popen([sys.executable, "manage.py", "tako_worker"], cwd=ROOT, env=env, **quiet)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            time.sleep(2)  # let the cluster start its workers
            return [server, worker], f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    server.kill()
    worker.kill()
    raise SystemExit("the service did not start")


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=30)


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def _bare_run(client: docker.DockerClient) -> None:
    out = client.containers.run(IMAGE, ["python3", "-c", "print(1)"], remove=True, network_mode="none")
    assert out == b"1\n", out


def _api_run(url: str) -> None:
    request = urllib.request.Request(
        f"{url}/execute",
        data=json.dumps({"code": "print(1)"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    assert body["success"] and body["stdout"] == "1\n", body


def _post(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def _async_run(url: str) -> None:
    job_id = _post(url, "/execute/async", {"code": "print(1)"})["job_id"]
    with urllib.request.urlopen(f"{url}/jobs/{job_id}/result?wait=true&timeout=120", timeout=130) as response:
        body = json.load(response)
    assert body["status"] == "succeeded" and body["stdout"] == "1\n", body


def _throughput(fn, jobs: int, clients: int = 4) -> float:  # type: ignore[no-untyped-def]
    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda _: fn(), range(jobs)))
    return jobs / (time.perf_counter() - began)


def _submit_to_start_ms(data_dir: str) -> float:
    """Median of container_started_at - created_at over the async jobs (read from the database)."""
    with sqlite3.connect(Path(data_dir) / "tako.sqlite3") as db:
        rows = db.execute(
            "SELECT (julianday(container_started_at) - julianday(created_at)) * 86400000 "
            "FROM executions_execution WHERE is_async AND container_started_at IS NOT NULL"
        ).fetchall()
    return statistics.median(r[0] for r in rows)


def _row(name: str, samples: list[float], reference: float | None) -> str:
    p50 = statistics.median(samples)
    p90 = statistics.quantiles(samples, n=10)[-1]
    ratio = f"{p50 / reference:5.2f}x" if reference else "  1.00x"
    return f"{name:<28} {p50 * 1000:8.1f} {p90 * 1000:8.1f} {statistics.mean(samples) * 1000:8.1f}  {ratio}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=40, help="sequential requests per variant (at least 30)")
    parser.add_argument("--jobs", type=int, default=40, help="jobs per throughput measurement")
    args = parser.parse_args()
    client = docker.from_env(version="auto")
    throughput: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tako-bench-") as data_dir:
        processes, url = _start_server(data_dir, workers=4)
        try:
            for _ in range(3):  # warm both paths up
                _bare_run(client)
                _api_run(url)
            bare, api = [], []
            for _ in range(max(args.n, 30)):
                bare.append(_timed(lambda: _bare_run(client)))
                api.append(_timed(lambda: _api_run(url)))
            throughput["bare docker run (SDK)"] = _throughput(lambda: _bare_run(client), args.jobs)
            throughput["POST /execute"] = _throughput(lambda: _api_run(url), args.jobs)
            throughput["async submit+wait, 4 workers"] = _throughput(lambda: _async_run(url), args.jobs)
        finally:
            _stop(processes)
    with tempfile.TemporaryDirectory(prefix="tako-bench-") as data_dir:
        processes, url = _start_server(data_dir, workers=2)
        try:
            for _ in range(20):  # one client, one job at a time: no queueing behind other jobs
                _async_run(url)
            submit_to_start_alone = _submit_to_start_ms(data_dir)
            throughput["async submit+wait, 2 workers"] = _throughput(lambda: _async_run(url), args.jobs)
            submit_to_start = _submit_to_start_ms(data_dir)
        finally:
            _stop(processes)

    reference = statistics.median(bare)
    print(f"print(1) on {os.cpu_count()} cores; sequential: {len(bare)} runs each")
    print(f"{'variant':<32} {'p50 ms':>8} {'p90 ms':>8} {'mean ms':>8}  vs bare p50")
    print(_row("bare docker run (SDK)", bare, None))
    print(_row("POST /execute", api, reference))
    print()
    print(f"throughput, 4 concurrent clients, {args.jobs} jobs each")
    bare_rate = throughput["bare docker run (SDK)"]
    print(f"{'variant':<32} {'jobs/s':>8}  vs bare")
    for name, rate in throughput.items():
        print(f"{name:<32} {rate:8.2f}  {rate / bare_rate:5.2f}x")
    print()
    print(f"async submit -> container start, median, one job at a time: {submit_to_start_alone:.0f} ms")
    print(f"async submit -> container start, median, incl. 4 clients on 2 workers: {submit_to_start:.0f} ms")


if __name__ == "__main__":
    main()
