"""gVisor's cost, cold and warm: print(1) under runc (`default`) and runsc (`strict`), each beside a
bare `docker run` with the same runtime, in one run. Two services as bench/execute_latency.py
starts them: the warm pool off (every job cold) and on (as shipped: default keeps 2, strict 1).
Usage: python bench/runtimes.py [-n 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from execute_latency import IMAGE, Service, _post, _wait_for_full_pool


def timed(run: Callable[[], None]) -> float:
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30)
    args = parser.parse_args()
    client = docker.from_env(version="auto")

    def bare(runtime: str) -> Callable[[], None]:
        def run() -> None:
            out = client.containers.run(
                IMAGE, ["python3", "-c", "print(1)"], remove=True, network_mode="none", runtime=runtime
            )
            assert out == b"1\n", out

        return run

    def sync(service: Service, job_type: str, runtime: str) -> Callable[[], None]:
        def run() -> None:
            body = _post(service.url, "/execute", {"code": "print(1)", "job_type": job_type})
            assert body["success"] and body["stdout"] == "1\n" and body["runtime"] == runtime, body

        return run

    with tempfile.TemporaryDirectory(prefix="tako-rt-") as cold_dir, tempfile.TemporaryDirectory() as pool_dir:
        cold, pooled = Service("rt-cold", cold_dir), Service("rt-pool", pool_dir)
        cold.start(TAKO_POOL_ENABLED="0")
        pooled.start()
        try:
            _wait_for_full_pool(pooled)
            variants = {
                "bare docker run, runc": bare("runc"),
                "bare docker run, runsc": bare("runsc"),
                "default (runc), cold": sync(cold, "default", "runc"),
                "strict (runsc), cold": sync(cold, "strict", "runsc"),
                "default (runc), warm pool": sync(pooled, "default", "runc"),
                "strict (runsc), warm pool": sync(pooled, "strict", "runsc"),
            }
            for run in variants.values():  # warm every path up (and let the pools refill)
                run()
            time.sleep(3)
            latency: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(max(args.n, 10)):
                for name, run in variants.items():
                    latency[name].append(timed(run))
                    if "warm" in name:
                        time.sleep(0.3)  # the keeper replaces the container the job took
        finally:
            cold.stop()
            pooled.stop()
    print(f"print(1), sequential, {max(args.n, 10)} runs each, variants alternating")
    print(f"{'variant':32s} {'p50 ms':>8s} {'p90 ms':>8s}")
    for name, values in latency.items():
        values.sort()
        p90 = values[int(len(values) * 0.9) - 1]
        print(f"{name:32s} {statistics.median(values) * 1000:8.1f} {p90 * 1000:8.1f}")


if __name__ == "__main__":
    main()
