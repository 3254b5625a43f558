"""Every error type user code can cause, end to end: real code, real container, through the API."""

from __future__ import annotations

import pytest

SIGNAL = "import os, signal\nsignal.signal(signal.{sig}, signal.SIG_DFL)\nos.kill(os.getpid(), signal.{sig})\n"

CASES = [
    # (code, exit code, error_type, status, message fragment)
    ("def broken(", 1, "syntax_error", "failed", "SyntaxError: '(' was never closed"),
    ("if True:\nprint(1)", 1, "syntax_error", "failed", "IndentationError"),
    ("import pandas", 1, "import_error", "failed", "ModuleNotFoundError: No module named 'pandas'"),
    ("from json import nope", 1, "import_error", "failed", "ImportError"),
    ("'a' + 1", 1, "type_error", "failed", "TypeError"),
    ("int('x')", 1, "value_error", "failed", "ValueError: invalid literal"),
    ("{}['k']", 1, "key_error", "failed", "KeyError: 'k'"),
    ("[][1]", 1, "index_error", "failed", "IndexError: list index out of range"),
    ("None.x", 1, "attribute_error", "failed", "AttributeError"),
    ("undefined_name", 1, "name_error", "failed", "NameError: name 'undefined_name' is not defined"),
    ("open('/nope.txt')", 1, "file_not_found", "failed", "FileNotFoundError"),
    ("def f(): f()\nf()", 1, "recursion_error", "failed", "RecursionError"),
    ("1/0", 1, "division_error", "failed", "ZeroDivisionError: division by zero"),
    ("b'\\xff'.decode('utf-8')", 1, "encoding_error", "failed", "UnicodeDecodeError"),
    ("import json; json.loads('{bad')", 1, "json_error", "failed", "JSONDecodeError"),
    ("import os; os.listdir('/root')", 1, "permission", "failed", "PermissionError"),
    ("open('/code/main.py', 'w')", 1, "os_error", "failed", "Read-only file system"),
    ("raise ConnectionRefusedError('no')", 1, "network_error", "failed", "ConnectionRefusedError: no"),
    ("raise TimeoutError('slow')", 1, "network_timeout", "failed", "TimeoutError: slow"),
    ("import socket; raise socket.timeout('t')", 1, "network_timeout", "failed", "TimeoutError: t"),
    ("import os; os.rmdir('/tmp')", 1, "os_error", "failed", "OSError"),
    ("raise MemoryError()", 1, "oom", "oom", "MemoryError"),
    ("raise RuntimeError('boom')", 1, "runtime_error", "failed", "RuntimeError: boom"),
    ("import sys; sys.exit(3)", 3, "runtime_error", "failed", "Process exited with code 3"),
    (SIGNAL.format(sig="SIGSEGV"), 139, "segfault", "failed", "SIGSEGV"),
    (SIGNAL.format(sig="SIGABRT"), 134, "abort", "failed", "SIGABRT"),
    (SIGNAL.format(sig="SIGFPE"), 136, "arithmetic_error", "failed", "SIGFPE"),
    (SIGNAL.format(sig="SIGBUS"), 135, "bus_error", "failed", "SIGBUS"),
    (SIGNAL.format(sig="SIGPIPE"), 141, "pipe_error", "failed", "SIGPIPE"),
    (SIGNAL.format(sig="SIGTERM"), 143, "cancelled", "cancelled", "SIGTERM"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", 137, "killed", "failed", "SIGKILL"),
    ("x = bytearray(700 * 1024 * 1024)", 137, "oom", "oom", "Execution exceeded memory limit"),
]


# gVisor's kernel answers these two with EACCES where Linux says EROFS and EBUSY: the program gets a
# PermissionError, and it is classified as the exception it got.
GVISOR_ANSWERS = {
    "open('/code/main.py', 'w')": ("permission", "Permission denied"),
    "import os; os.rmdir('/tmp')": ("permission", "Permission denied"),
}

# Every job of this module runs in a container created for it and in a pooled one under Docker's
# runc, and under gVisor's runsc (the `strict` job type's runtime): the same classification.
pytestmark = pytest.mark.parametrize(
    ("container_path", "runtime"), [("cold", "runc"), ("pool", "runc"), ("cold", "runsc")], indirect=True
)


@pytest.fixture
def runtime(request: pytest.FixtureRequest, settings) -> str:
    settings.TAKO_DEFAULT_RUNTIME = request.param
    return str(request.param)


@pytest.fixture
def api(api, container_path, runtime):
    return api


@pytest.mark.parametrize(("code", "exit_code", "error_type", "status", "message"), CASES)
def test_it_classifies(
    api, runtime: str, code: str, exit_code: int, error_type: str, status: str, message: str
) -> None:
    body = api.post("/execute", {"code": code}).json()
    if runtime == "runsc" and code in GVISOR_ANSWERS:  # another kernel, another errno: classified as raised
        error_type, message = GVISOR_ANSWERS[code]
    assert body["success"] is False
    assert body["exit_code"] == exit_code
    assert body["error_type"] == error_type
    assert message in body["error"]
    record = api.get(f"/executions/{body['execution_id']}").json()
    assert record["status"] == status
    assert record["error"]["type"] == error_type


def test_it_classifies_a_timeout(api) -> None:
    body = api.post("/execute", {"code": "import time; time.sleep(60)", "timeout": 2}).json()
    assert (body["success"], body["error_type"], body["error"]) == (
        False,
        "timeout",
        "Execution timeout exceeded (2s)",
    )
    assert body["execution_time"] < 10


def test_it_does_not_classify_by_searching_stderr(api) -> None:
    code = "import sys\nprint('PermissionError: permission denied', file=sys.stderr)\nraise KeyError('k')"
    body = api.post("/execute", {"code": code}).json()
    assert body["error_type"] == "key_error"


def test_a_program_that_prints_an_error_but_exits_zero_succeeds(api) -> None:
    body = api.post("/execute", {"code": "print('Traceback (most recent call last):\\nZeroDivisionError: x')"}).json()
    assert body["success"] is True and body["error_type"] is None


def test_an_exception_caught_by_the_program_does_not_count(api) -> None:
    body = api.post("/execute", {"code": "try:\n    1/0\nexcept ZeroDivisionError:\n    print('handled')"}).json()
    assert body["success"] is True and body["stdout"] == "handled\n"


def test_invalid_result_json_is_a_json_error(api) -> None:
    body = api.post("/execute", {"code": "open('/output/result.json', 'w').write('{not json')"}).json()
    assert body["success"] is False
    assert body["error_type"] == "json_error"
    assert body["error"].startswith("Invalid JSON in /output/result.json")
    record = api.get(f"/executions/{body['execution_id']}").json()
    assert record["error"]["phase"] == "output"
