"""A batch of 200 inputs beside 200 single submissions of the same job, side by side in one run.

Starts the service (daphne + a worker cluster, as `make run`: TAKO_MAX_WORKERS the machine's
default, the warm pool on) on its own SQLite file, with no per-caller quota and room for 1000
queued jobs. Then, alternating, `--rounds` times each:
  singles: `-n` POST /execute/async one after another (what a script without batches does), then
           waits for the last job to end;
  batch:   one POST /execute/batch with `-n` inputs, then waits for GET /batches/{id} to say done.
Reports the time to submit, the time until every job has ended, and jobs/s, each job printing
its input (a quick `print`).
Usage: python bench/batch_throughput.py [-n 200] [--rounds 1] [--out bench/batch_throughput.txt]
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
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
CODE = "import json\nprint(json.load(open('/input/data.json'))['n'])"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _count(database: Path, job_ids: list[str], statuses: tuple[str, ...]) -> int:
    """How many of these jobs are in one of `statuses` (read from the service's SQLite file)."""
    query = (
        "SELECT COUNT(*) FROM executions_execution WHERE id IN (SELECT value FROM json_each(?)) "
        "AND status IN (SELECT value FROM json_each(?))"
    )
    with sqlite3.connect(database) as db:
        ids = json.dumps([job_id.replace("-", "") for job_id in job_ids])  # (stored as 32 hex digits)
        (count,) = db.execute(query, (ids, json.dumps(statuses))).fetchone()
    return int(count)


def _all_ended(database: Path, job_ids: list[str]) -> bool:
    return _count(database, job_ids, ("queued", "running")) == 0


def singles(url: str, database: Path, n: int) -> tuple[float, float, list[str]]:
    session = requests.Session()
    began = time.perf_counter()
    job_ids = []
    for i in range(n):
        response = session.post(f"{url}/execute/async", json={"code": CODE, "input_data": {"n": i}}, timeout=30)
        assert response.status_code == 202, response.text
        job_ids.append(response.json()["job_id"])
    submitted = time.perf_counter() - began
    while not _all_ended(database, job_ids):
        time.sleep(0.05)
    return submitted, time.perf_counter() - began, job_ids


def batch(url: str, n: int) -> tuple[float, float, list[str]]:
    session = requests.Session()
    began = time.perf_counter()
    inputs = [{"n": i} for i in range(n)]
    response = session.post(f"{url}/execute/batch", json={"code": CODE, "inputs": inputs}, timeout=60)
    assert response.status_code == 202, response.text
    submitted = time.perf_counter() - began
    batch_id = response.json()["batch_id"]
    while not session.get(f"{url}/batches/{batch_id}", timeout=30).json()["done"]:
        time.sleep(0.05)
    return submitted, time.perf_counter() - began, response.json()["job_ids"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "bench" / "batch_throughput.txt"))
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="tako-batch-bench-")
    env = {**os.environ, "TAKO_DATA_DIR": data_dir, "TAKO_ALLOW_ANONYMOUS": "1", "TAKO_RATE_LIMIT_PER_MINUTE": "0",
           "TAKO_MAX_JOBS_IN_PROGRESS": "0", "TAKO_MAX_QUEUE_SIZE": "1000", "TAKO_LOG_LEVEL": "WARNING",
           "TAKO_DEPLOYMENT_ID": f"bench-batch-{os.getpid()}"}  # fmt: skip
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    database = Path(data_dir) / "tako.sqlite3"
    port = _free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "takoweb.asgi:application"]
    processes = [
        subprocess.Popen(daphne, cwd=ROOT, env=env, **quiet),  # type: ignore[call-overload]
        subprocess.Popen([sys.executable, "manage.py", "tako_worker"], cwd=ROOT, env=env, **quiet),  # type: ignore[call-overload]
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(f"{url}/health", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        batch(url, 10)  # warm up: the pool fills, the first containers start
        results: dict[str, list[tuple[float, float]]] = {"singles": [], "batch": []}
        for _ in range(args.rounds):
            for name in ("singles", "batch"):
                if name == "singles":
                    submitted, total, job_ids = singles(url, database, args.n)
                else:
                    submitted, total, job_ids = batch(url, args.n)
                succeeded = _count(database, job_ids, ("succeeded",))
                assert succeeded == args.n, f"{name}: {succeeded} of {args.n} succeeded"
                results[name].append((submitted, total))
                time.sleep(2)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
    lines = [
        f"{args.n} jobs of a quick print, {os.cpu_count()} cores, SQLite, {args.rounds} round(s), medians:",
        f"{'variant':<34}{'submit s':>10}{'all ended s':>13}{'jobs/s':>9}",
    ]
    labels = {"singles": f"{args.n} x POST /execute/async", "batch": f"1 x POST /execute/batch ({args.n} inputs)"}
    for name, runs in results.items():
        submitted = statistics.median(r[0] for r in runs)
        total = statistics.median(r[1] for r in runs)
        lines.append(f"{labels[name]:<34}{submitted:>10.2f}{total:>13.2f}{args.n / total:>9.2f}")
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
