"""Input files in the container: under /input beside data.json, read-only, on both the cold path
and the warm pool's."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import pytest

READ_FILES = r"""
import hashlib, json, os
found = {}
for folder, _dirs, names in os.walk('/input'):
    for name in names:
        path = os.path.join(folder, name)
        with open(path, 'rb') as f:
            found[os.path.relpath(path, '/input')] = hashlib.sha256(f.read()).hexdigest()
writable = []
for path in ('/input/sales.csv', '/input/nested/deep/blob.bin', '/input/new.txt'):
    try:
        with open(path, 'ab') as f:
            f.write(b'x')
        writable.append(path)
    except OSError as exc:
        pass
with open('/input/data.json') as f:
    data = json.load(f)
json.dump({"found": found, "writable": writable, "data": data}, open('/output/result.json', 'w'))
"""


@pytest.fixture
def api(api: Any, container_path: str) -> Any:
    return api


def test_files_are_under_input_read_only(api: Any) -> None:
    files = {"sales.csv": b"region,amount\nnorth,3\nsouth,4\n", "nested/deep/blob.bin": bytes(range(256)) * 100}
    body = api.post(
        "/execute",
        {
            "code": READ_FILES,
            "input_data": {"n": 1},
            "files": {path: base64.b64encode(data).decode() for path, data in files.items()},
        },
    ).json()
    assert body["success"], body
    output = body["output"]
    assert output["found"] == {
        "data.json": hashlib.sha256(b'{"n": 1}').hexdigest(),
        **{path: hashlib.sha256(data).hexdigest() for path, data in files.items()},
    }
    assert output["writable"] == []
    assert output["data"] == {"n": 1}


def test_a_rerun_sees_the_same_files(api: Any) -> None:
    code = "print(open('/input/in/a.txt').read())"
    first = api.post("/execute", {"code": code, "files": {"in/a.txt": base64.b64encode(b"hello").decode()}}).json()
    assert first["stdout"] == "hello\n"
    rerun = api.post(f"/jobs/{first['execution_id']}/rerun", {}).json()["job_id"]
    from executions import services
    from executions.models import Execution

    services.execution_run(execution_id=rerun, role="web")
    assert Execution.objects.get(pk=rerun).stdout == "hello\n"


def test_a_10_mb_file_end_to_end(api: Any, container_path: str) -> None:
    """Measured, not asserted beyond a generous bound: the time of POST /execute with one 10 MB file
    (encoded, sent, validated, stored, copied under /input, read back in the container)."""
    data = bytes(range(256)) * (10 * 1024 * 1024 // 256)
    payload = {
        "code": "import hashlib; print(hashlib.sha256(open('/input/big.bin','rb').read()).hexdigest())",
        "files": {"big.bin": base64.b64encode(data).decode()},
    }
    api.post("/execute", {"code": "print(1)"})  # the first request of a process pays for its imports
    began = time.monotonic()
    body = api.post("/execute", payload).json()
    seconds = time.monotonic() - began
    small_began = time.monotonic()
    api.post("/execute", {"code": "print(1)"})
    small = time.monotonic() - small_began
    print(f"\n10 MB file, POST /execute ({container_path}): {seconds * 1000:.0f} ms; no files: {small * 1000:.0f} ms")
    assert body["stdout"].strip() == hashlib.sha256(data).hexdigest()
    assert seconds < 20
