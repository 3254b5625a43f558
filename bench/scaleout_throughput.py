"""Async throughput on the embedded default (SQLite + the database broker) beside PostgreSQL + Redis.

Starts the service twice, one after the other, on the same machine (daphne + a worker cluster of
TAKO_MAX_WORKERS): once on a fresh SQLite file, once on PostgreSQL with django-q2's Redis broker,
both from scripts/ensure-pg-redis.sh (which it runs). For each: async submit + wait of print(1),
sequential p50 and jobs/s at 4 concurrent clients, the warm pool on as shipped.
Usage: python bench/scaleout_throughput.py [--jobs 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from execute_latency import ROOT, Service, _async_run, _throughput, _timed, _wait_for_full_pool


def _scaleout_urls() -> dict[str, str]:
    exports = subprocess.run(["scripts/ensure-pg-redis.sh"], cwd=ROOT, check=True, capture_output=True, text=True)
    urls = dict(line.removeprefix("export ").split("=", 1) for line in exports.stdout.splitlines() if "=" in line)
    # A database of its own, so the benchmark never touches another deployment's data.
    name = f"bench_{uuid.uuid4().hex[:8]}"
    base = urls["DATABASE_URL"].rsplit("/", 1)[0]
    subprocess.run(
        [sys.executable, "-c", f"import psycopg; c = psycopg.connect('{urls['DATABASE_URL']}', autocommit=True); "
         f"c.execute('CREATE DATABASE {name}')"],
        check=True,
    )  # fmt: skip
    return {"DATABASE_URL": f"{base}/{name}", "REDIS_URL": urls["REDIS_URL"].rsplit("/", 1)[0] + "/7"}


def _measure(name: str, jobs: int, **env: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="tako-bench-") as data_dir:
        service = Service(name, data_dir)
        service.start(**env)
        try:
            _wait_for_full_pool(service)
            for _ in range(3):
                _async_run(service)
            sequential = [_timed(lambda: _async_run(service)) for _ in range(20)]
            _wait_for_full_pool(service)
            rate = _throughput(lambda: _async_run(service), jobs, service).rate
        finally:
            service.stop()
    return statistics.median(sequential), rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60, help="jobs per throughput measurement")
    args = parser.parse_args()
    results = {
        "SQLite + database broker": _measure("embedded", args.jobs),
        "PostgreSQL + Redis": _measure("scaleout", args.jobs, **_scaleout_urls()),
    }
    print(f"async submit+wait of print(1) on {os.cpu_count()} cores, warm pool on; {args.jobs} jobs at 4 concurrent")
    print(f"{'configuration':<28} {'p50 ms (one at a time)':>24} {'jobs/s (4 clients)':>20}")
    for name, (p50, rate) in results.items():
        print(f"{name:<28} {p50 * 1000:24.1f} {rate:20.2f}")


if __name__ == "__main__":
    main()
