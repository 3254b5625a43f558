"""Latency of POST /execute for print(1), side by side with a bare `docker run` of the same code.

Starts the service under daphne on a free loopback port (its own SQLite file), then measures in
one run, alternating the two so that both see the same machine:
  - bare: `docker run --rm` of the job-type image through the SDK (`python3 -c 'print(1)'`)
  - api:  POST /execute {"code": "print(1)"} over HTTP
Prints p50/p90/mean for each and the ratio api/bare. Usage: python bench/execute_latency.py [-n 40]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "tako-vm-default:latest"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(data_dir: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "TAKO_DATA_DIR": data_dir, "TAKO_LOG_LEVEL": "WARNING"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "takoweb.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,  # daphne's access log
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("daphne did not start")


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


def _row(name: str, samples: list[float], reference: float | None) -> str:
    p50 = statistics.median(samples)
    p90 = statistics.quantiles(samples, n=10)[-1]
    ratio = f"{p50 / reference:5.2f}x" if reference else "  1.00x"
    return f"{name:<28} {p50 * 1000:8.1f} {p90 * 1000:8.1f} {statistics.mean(samples) * 1000:8.1f}  {ratio}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=40, help="requests per variant (at least 30)")
    args = parser.parse_args()
    client = docker.from_env(version="auto")
    with tempfile.TemporaryDirectory(prefix="tako-bench-") as data_dir:
        server, url = _start_server(data_dir)
        try:
            for _ in range(3):  # warm both paths up
                _bare_run(client)
                _api_run(url)
            bare, api = [], []
            for _ in range(max(args.n, 30)):
                bare.append(_timed(lambda: _bare_run(client)))
                api.append(_timed(lambda: _api_run(url)))
        finally:
            server.terminate()
            server.wait(timeout=10)
    reference = statistics.median(bare)
    print(f"print(1), {len(bare)} sequential runs each, {os.cpu_count()} cores")
    print(f"{'variant':<28} {'p50 ms':>8} {'p90 ms':>8} {'mean ms':>8}  vs bare p50")
    print(_row("bare docker run (SDK)", bare, None))
    print(_row("POST /execute", api, reference))


if __name__ == "__main__":
    main()
