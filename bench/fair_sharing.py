"""Fair sharing, measured: two analysts with their own API keys on one service (daphne + a worker
cluster as `make run` starts it, the warm pool on), beside a bare `docker run` in the same run.

  1. A queues 20 async jobs of `time.sleep(3)`; a second later B queues 3 `print()` jobs: how long
     B waits for each result (from its submission), and A's backlog's own end.
  2. A has 4 long or hostile jobs running (a CPU spin, a fork bomb, a memory hog, a 14 s sleep;
     15 s timeouts); B sends 10 sync `POST /execute` of `print(1)`, one after another: p50, worst.
  3. Throughput: 40 `POST /execute` of `print(1)` at 4 concurrent clients, beside 40 bare
     `docker run` at 4 concurrent; with `--baseline DIR` also a service started from another
     checkout (e.g. a worktree of the commit before fair sharing), alternating, same machine.

Usage: python bench/fair_sharing.py [--baseline DIR]
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
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "tako-vm-default:latest"
CLIENTS = 4
HOSTILE = {
    "cpu spin": "while True: pass",
    "fork bomb": "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass",
    "memory hog": "x = []\nwhile True: x.append(bytearray(10**6))",
    "14 s sleep": "import time; time.sleep(14)",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """daphne + `manage.py tako_worker` from `root`, on a private SQLite file and container label."""

    def __init__(self, name: str, root: Path, data_dir: str) -> None:
        self.name, self.root = name, root
        self.env = {
            **os.environ,
            "TAKO_DATA_DIR": data_dir,
            "TAKO_DEPLOYMENT_ID": f"bench-fair-{name}-{os.getpid()}",
            "TAKO_LOG_LEVEL": "WARNING",
            "TAKO_RATE_LIMIT_PER_MINUTE": "0",
            "TAKO_ALLOW_ANONYMOUS": "1",  # loopback: /pool/stats without a key; the analysts use theirs
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self.url = ""

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.root,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def start(self) -> None:
        self.manage("migrate", "-v0")
        # A pool of 2 for `default` (not one sized from demand), which start() waits for.
        self.manage("shell", "-c", "from executions.models import Environment; "
                    "Environment.objects.filter(name='default').update(pool_size=2)")  # fmt: skip
        port = free_port()
        daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "takoweb.asgi:application"]
        for command in (daphne, [sys.executable, "manage.py", "tako_worker"]):
            self.processes.append(
                subprocess.Popen(
                    command,
                    cwd=self.root,
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/pool/stats", timeout=5) as response:
                    if json.load(response)["warm_pool"].get("default", {}).get("ready", 0) >= 2:
                        return
            except (OSError, KeyError, ValueError):
                pass
            time.sleep(0.2)
        raise SystemExit(f"the {self.name} service did not start with a full pool")

    def key(self, user: str) -> str:
        code = (
            "from django.contrib.auth.models import User; from executions.models import ApiKey; "
            f"u, _ = User.objects.get_or_create(username={user!r}); print(ApiKey.issue(name={user!r}, owner=u)[1])"
        )
        return self.manage("shell", "-c", code).strip().splitlines()[-1]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=60)


def call(url: str, path: str, key: str | None = None, body: dict | None = None, timeout: float = 120) -> dict:
    headers = {"Content-Type": "application/json", **({"X-API-Key": key} if key else {})}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{url}{path}", data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return dict(json.load(response))


def submit(service: Service, key: str, code: str, **fields: object) -> str:
    return str(call(service.url, "/execute/async", key, {"code": code, **fields})["job_id"])


def result(service: Service, key: str, job_id: str) -> dict:
    return call(service.url, f"/jobs/{job_id}/result?wait=true&timeout=120", key, timeout=130)


def backlog_scenario(service: Service, alice: str, bob: str) -> str:
    began = time.monotonic()
    backlog = [submit(service, alice, "import time; time.sleep(3)") for _ in range(20)]
    time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
    waits: list[float] = []

    def quick(n: int) -> None:
        submitted = time.monotonic()
        body = result(service, bob, submit(service, bob, f"print({n})"))
        assert body["status"] == "succeeded", body
        waits.append(time.monotonic() - submitted)

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(quick, range(3)))
    for job_id in backlog:
        assert result(service, alice, job_id)["status"] == "succeeded"
    backlog_s = time.monotonic() - began
    return (
        f"A: 20 x sleep(3) queued; B's 3 quick jobs done {max(waits):.1f} s after submission (each: "
        f"{', '.join(f'{w:.1f}' for w in sorted(waits))} s); A's backlog done after {backlog_s:.1f} s"
    )


def hostile_scenario(service: Service, alice: str, bob: str) -> str:
    jobs = [submit(service, alice, code, timeout=15) for code in HOSTILE.values()]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = [call(service.url, f"/jobs/{job_id}", alice)["status"] for job_id in jobs]
        if all(state == "running" for state in states):
            break
        time.sleep(0.2)
    else:
        raise SystemExit(f"A's hostile jobs did not all start: {states}")
    latencies = []
    for _ in range(10):
        began = time.perf_counter()
        body = call(service.url, "/execute", bob, {"code": "print(1)"})
        latencies.append(time.perf_counter() - began)
        assert body["success"] and body["stdout"] == "1\n", body
    for job_id in jobs:
        result(service, alice, job_id)
    latencies.sort()
    return (
        f"A: 4 long/hostile jobs running; B's 10 sync print(1): p50 {statistics.median(latencies) * 1000:.0f} ms, "
        f"worst {latencies[-1] * 1000:.0f} ms"
    )


def throughput(run: object, jobs: int = 40) -> float:
    began = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(lambda _: run(), range(jobs)))  # type: ignore[operator]
    return jobs / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="a checkout to start a second service from, for throughput")
    args = parser.parse_args()
    client = docker.from_env(version="auto")

    def bare() -> None:
        out = client.containers.run(IMAGE, ["python3", "-c", "print(1)"], remove=True, network_mode="none")
        assert out == b"1\n", out

    with tempfile.TemporaryDirectory(prefix="tako-fair-") as data, tempfile.TemporaryDirectory() as base_data:
        service = Service("this", ROOT, data)
        baseline = Service("baseline", args.baseline.resolve(), base_data) if args.baseline else None
        service.start()
        if baseline:
            baseline.start()
        try:
            alice, bob = service.key("analyst-a"), service.key("analyst-b")
            workers = service.manage(
                "shell", "-c", "from django.conf import settings; print(settings.TAKO_MAX_WORKERS)"
            )
            print(f"fair sharing on {os.cpu_count()} cores, {workers.strip()} workers (TAKO_MAX_WORKERS)")
            print(backlog_scenario(service, alice, bob))
            print(hostile_scenario(service, alice, bob))

            def sync(target: Service, key: str | None) -> None:
                body = call(target.url, "/execute", key, {"code": "print(1)"})
                assert body["success"] and body["stdout"] == "1\n", body

            base_key = baseline.key("analyst-a") if baseline else None
            rates: dict[str, list[float]] = {"bare docker run": [], "POST /execute (this)": []}
            if baseline:
                rates["POST /execute (baseline)"] = []
            for _ in range(3):  # alternating, so every variant sees the same machine
                rates["bare docker run"].append(throughput(bare))
                rates["POST /execute (this)"].append(throughput(lambda: sync(service, alice)))
                if baseline:
                    rates["POST /execute (baseline)"].append(throughput(lambda: sync(baseline, base_key)))
            bare_rate = statistics.median(rates["bare docker run"])
            print(f"throughput, {CLIENTS} concurrent clients, 40 jobs, median of 3")
            for name, values in rates.items():
                rate = statistics.median(values)
                print(f"  {name:28s} {rate:6.2f} jobs/s  {rate / bare_rate:5.2f}x bare")
        finally:
            service.stop()
            if baseline:
                baseline.stop()


if __name__ == "__main__":
    try:
        main()
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{exc}: {exc.read()[:500]!r}") from None
