"""End-to-end time of POST /execute with a 10 MB input file, over HTTP against a real daphne on
loopback (its own SQLite file and deployment id; sync runs in the web process, cold containers).

Compares, sequentially and alternating: no file; one 10 MB file as base64 in JSON; the same file as
multipart/form-data. Each run reads the file back in the container and prints its sha256 (checked).
The 10 MB is random bytes (incompressible). Usage: python bench/input_files.py [-n 7]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
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

ROOT = Path(__file__).resolve().parent.parent
SIZE = 10 * 1024 * 1024
CODE = "import hashlib; print(hashlib.sha256(open('/input/big.bin', 'rb').read()).hexdigest())"
BOUNDARY = "bench-input-files-boundary"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(url: str, body: bytes, content_type: str) -> tuple[float, dict]:
    request = urllib.request.Request(f"{url}/execute", data=body, headers={"Content-Type": content_type})
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    return time.perf_counter() - began, answer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=7)
    args = parser.parse_args()
    data = os.urandom(SIZE)
    digest = hashlib.sha256(data).hexdigest()
    as_json = json.dumps({"code": CODE, "files": {"big.bin": base64.b64encode(data).decode()}}).encode()
    request_part = json.dumps({"code": CODE}).encode()
    as_multipart = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="request"\r\n\r\n'.encode()
        + request_part
        + f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="f"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    variants = {
        "no file": (json.dumps({"code": "print('x')"}).encode(), "application/json"),
        "10 MB, base64 in JSON": (as_json, "application/json"),
        "10 MB, multipart": (as_multipart, f"multipart/form-data; boundary={BOUNDARY}"),
    }
    with tempfile.TemporaryDirectory(prefix="tako-bench-files-") as data_dir:
        port = free_port()
        env = {
            **os.environ,
            "TAKO_DATA_DIR": data_dir,
            "TAKO_DEPLOYMENT_ID": f"bench-files-{os.getpid()}",
            "TAKO_LOG_LEVEL": "WARNING",
            "TAKO_ALLOW_ANONYMOUS": "1",
            "TAKO_RATE_LIMIT_PER_MINUTE": "0",
            "TAKO_POOL_ENABLED": "0",
        }
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "takoweb.asgi:application"]
        server = subprocess.Popen(daphne, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            post(url, *variants["no file"])  # warm-up: imports, the breaker's row
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.n):
                for name, (body, content_type) in variants.items():
                    seconds, answer = post(url, body, content_type)
                    assert answer["success"], answer
                    assert name == "no file" or answer["stdout"].strip() == digest, answer
                    times[name].append(seconds)
        finally:
            server.terminate()
            server.wait(timeout=60)
    print(f"POST /execute over HTTP on loopback, cold containers, n={args.n} (median / max):")
    for name, values in times.items():
        print(f"  {name:24} {statistics.median(values) * 1000:6.0f} ms / {max(values) * 1000:6.0f} ms")


if __name__ == "__main__":
    main()
