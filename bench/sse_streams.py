"""What 100 open server-sent event streams cost the other requests, side by side in one run.

Starts daphne on its own SQLite file (no worker: the followed jobs are records set running here,
and a writer appends a line to every one of them each `--tick` seconds, in one statement, as
run monitors would). Then measures the latency (p50/p95/max) of GET /jobs/{id} and GET /executions?limit=10,
`-n` sequential requests each: with no stream open, with `--streams` streams open (each receiving a
line a tick), and with none again. Also: daphne's threads (streams must not hold one each) and its
CPU over each phase, and the events the streams received.
Usage: python bench/sse_streams.py [--streams 100] [-n 200] [--tick 0.5] [--out bench/sse_streams.txt]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _proc(pid: int) -> tuple[int, float]:
    """Threads and CPU seconds (user + system) of a process."""
    threads = int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if line.startswith("Threads:")))  # fmt: skip
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return threads, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _latencies(url: str, paths: list[str], n: int) -> list[float]:
    session = requests.Session()
    took = []
    for i in range(n):
        began = time.perf_counter()
        response = session.get(f"{url}{paths[i % len(paths)]}", timeout=30)
        took.append(time.perf_counter() - began)
        assert response.status_code == 200, response.text
    return took


def _summary(took: list[float]) -> str:
    ordered = sorted(took)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    p50, top = statistics.median(ordered), ordered[-1]
    return f"p50 {p50 * 1000:6.1f} ms  p95 {p95 * 1000:6.1f} ms  max {top * 1000:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--tick", type=float, default=0.5)
    parser.add_argument("--out", default=str(ROOT / "bench" / "sse_streams.txt"))
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="tako-sse-bench-")
    env = {**os.environ, "TAKO_DATA_DIR": data_dir, "TAKO_ALLOW_ANONYMOUS": "1", "TAKO_RATE_LIMIT_PER_MINUTE": "0",
           "TAKO_LOG_LEVEL": "WARNING", "TAKO_DEPLOYMENT_ID": f"bench-sse-{os.getpid()}"}  # fmt: skip
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update(TAKO_DATA_DIR=data_dir, DJANGO_SETTINGS_MODULE="takoweb.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db.models import F, Value
    from django.db.models.functions import Concat

    from executions.models import Environment, Execution
    from executions.services import execution_create

    environment = Environment.objects.get(name="default")
    jobs = [execution_create(code="print(1)", input_data={}, environment=environment) for _ in range(args.streams)]
    ids = [job.pk for job in jobs]
    Execution.objects.filter(pk__in=ids).update(status="running", worker="bench:none")

    port = _free_port()
    daphne = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "takoweb.asgi:application"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    paths = [f"/jobs/{ids[0]}", "/executions?limit=10"]
    stop = threading.Event()
    received = [0] * len(ids)
    lines: list[str] = []

    def writer() -> None:
        while not stop.wait(args.tick):
            Execution.objects.filter(pk__in=ids).update(stdout=Concat(F("stdout"), Value("tick\n")))

    def reader(index: int) -> None:
        with requests.get(f"{url}/jobs/{ids[index]}/events", stream=True, timeout=60) as response:
            for line in response.iter_lines(decode_unicode=True):
                if line and line.startswith("event: stdout"):
                    received[index] += 1
                if stop.is_set():
                    return

    try:
        _latencies(url, paths, 20)  # warm up
        phases = []
        variants = (("no streams", False), (f"{args.streams} streams open", True), ("no streams again", False))
        for name, streams in variants:
            readers: list[threading.Thread] = []
            if streams:
                stop.clear()
                readers = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(len(ids))]
                for thread in [*readers, threading.Thread(target=writer, daemon=True)]:
                    thread.start()
                time.sleep(3)  # every stream open and receiving
            threads, cpu = _proc(daphne.pid)
            began = time.monotonic()
            took = _latencies(url, paths, args.n)
            spent = time.monotonic() - began
            threads_after, cpu_after = _proc(daphne.pid)
            phases.append((name, took, max(threads, threads_after), (cpu_after - cpu) / spent))
            if streams:
                stop.set()
                Execution.objects.filter(pk__in=ids).update(stdout=Concat(F("stdout"), Value("bye\n")))
                for thread in readers:
                    thread.join(timeout=10)
                lines.append(
                    f"events per stream while measured: min {min(received)}, max {max(received)} "
                    f"(a line every {args.tick} s for each of {len(ids)} streams)"
                )
                time.sleep(2)
    finally:
        stop.set()
        daphne.terminate()
        daphne.wait(timeout=30)

    report = [f"GET /jobs/{{id}} and GET /executions?limit=10, {args.n} sequential requests, daphne alone:"]
    for name, took, threads, cpu in phases:
        report.append(f"  {name:<22} {_summary(took)}   daphne threads {threads:3d}   daphne CPU {cpu * 100:5.1f} %")
    report += [f"  {line}" for line in lines]
    text = "\n".join(report)
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
