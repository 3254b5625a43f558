"""The fake sandbox of the unit tier keeps the Sandbox protocol and reports runs as the engine does."""

from __future__ import annotations

import inspect
import threading
import time
from typing import Any

import pytest

from executions.sandbox import ContainerShape, RunResult, RunSpec, Sandbox, SandboxUnavailable
from executions.sandbox.classify import classify_exit
from executions.sandbox.docker import DockerSandbox
from executions.sandbox.fake import FakeSandbox

SHAPE = ContainerShape(image="tako-vm-default:latest", image_id="")


def spec(code: str, **fields: Any) -> RunSpec:
    return RunSpec(**{"execution_id": "e1", "shape": SHAPE, "code": code, "input_json": "{}", "timeout": 5, **fields})


def outcome(result: RunResult, timeout: int = 5) -> tuple[str, str | None]:
    ended = classify_exit(
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        oom_killed=result.oom_killed,
        exception=result.exception,
        timeout=timeout,
        cancelled=result.cancelled,
    )
    return ended.status, ended.error_type


PROTOCOL = [name for name in vars(Sandbox) if not name.startswith("_")]


@pytest.mark.parametrize("implementation", [FakeSandbox, DockerSandbox])
@pytest.mark.parametrize("method", PROTOCOL)
def test_it_has_every_method_of_the_protocol_with_its_parameters(implementation: type, method: str) -> None:
    wanted = inspect.signature(getattr(Sandbox, method)).parameters
    assert inspect.signature(getattr(implementation, method)).parameters.keys() == wanted.keys()


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("print('hi')", ("succeeded", None)),
        ("print(", ("failed", "syntax_error")),
        ("{}['missing']", ("failed", "key_error")),
        ("1 / 0", ("failed", "division_error")),
        ("import json; json.loads('x')", ("failed", "json_error")),
        ("import sys; sys.exit(3)", ("failed", "runtime_error")),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", ("failed", "segfault")),
        ("import time; time.sleep(30)", ("timeout", "timeout")),
    ],
)
def test_it_ends_runs_as_the_engine_would(code: str, expected: tuple[str, str | None]) -> None:
    result = FakeSandbox().run(spec(code, timeout=1))
    assert outcome(result, timeout=1) == expected


def test_a_timeout_kills_the_program_like_the_engine() -> None:
    began = time.monotonic()
    result = FakeSandbox().run(spec("import time; print('before', flush=True); time.sleep(30)", timeout=1))
    assert time.monotonic() - began < 5
    assert (result.exit_code, result.timed_out, result.stdout) == (137, True, "before\n")


def test_it_reports_the_exception_that_ended_the_program() -> None:
    result = FakeSandbox().run(spec("raise ValueError('bad value')"))
    assert result.exit_code == 1
    assert result.exception is not None and result.exception.class_names[:2] == (
        "builtins.ValueError",
        "builtins.Exception",
    )
    assert result.exception.message == "ValueError: bad value"
    assert "Traceback" in result.stderr


def test_it_gives_the_program_its_input_and_collects_its_output() -> None:
    code = (
        "import json\n"
        "n = json.load(open('input/data.json'))['n']\n"
        "json.dump({'double': n * 2}, open('output/result.json', 'w'))\n"
        "open('output/notes.txt', 'w').write('kept')\n"
    )
    result = FakeSandbox().run(spec(code, input_json='{"n": 21}'))
    assert result.exit_code == 0 and result.result_json == '{"double": 42}'
    assert [(a.name, a.data) for a in result.artifacts] == [("notes.txt", b"kept")]


def test_it_caps_output_as_the_engine_does() -> None:
    result = FakeSandbox(output_cap_bytes=1024).run(spec("print('x' * 5000)"))
    assert result.stdout_truncated and result.stdout.endswith("[TRUNCATED: output exceeded 1024 bytes]")


def test_output_streams_live_and_the_start_is_announced() -> None:
    chunks: list[tuple[str, str]] = []
    started: list[bool] = []
    code = "import sys\nprint('out')\nprint('err', file=sys.stderr)\n"
    FakeSandbox().run(
        spec(
            code,
            on_output=lambda stream, text: chunks.append((stream, text)),
            on_container_start=lambda: started.append(True),
        )
    )
    assert started == [True]
    assert "".join(text for stream, text in chunks if stream == "stdout") == "out\n"
    assert "".join(text for stream, text in chunks if stream == "stderr") == "err\n"


def test_past_the_cap_the_live_output_ends_with_the_stored_marker_then_tells_truncated() -> None:
    calls: list[tuple[str, str | None]] = []
    # 'a' then 2-byte characters: the 1024-byte cap cuts one in half, which neither side keeps.
    code = "import sys\nprint('a' + 'é' * 600, flush=True)\nprint('more ' * 100)\nprint('err', file=sys.stderr)"
    result = FakeSandbox(output_cap_bytes=1024).run(
        spec(
            code,
            on_output=lambda stream, text: calls.append((stream, text)),
            on_truncated=lambda stream: calls.append((stream, None)),
        )
    )
    assert result.stdout_truncated and not result.stderr_truncated
    live = "".join(text for stream, text in calls if stream == "stdout" and text is not None)
    assert live == result.stdout and live.endswith("\n[TRUNCATED: output exceeded 1024 bytes]")
    stdout_calls = [text for stream, text in calls if stream == "stdout"]
    assert stdout_calls[-2:] == ["\n[TRUNCATED: output exceeded 1024 bytes]", None]  # the marker, then the word
    assert ("stderr", None) not in calls and "".join(t for s, t in calls if s == "stderr" and t) == "err\n"


def test_a_cancelled_run_ends_as_cancelled() -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    result = FakeSandbox().run(spec("import time; time.sleep(30)", cancel=cancel))
    assert result.cancelled and not result.timed_out
    assert outcome(result) == ("cancelled", "cancelled")


def test_stop_kills_a_running_execution() -> None:
    sandbox = FakeSandbox()
    results: list[RunResult] = []
    runner = threading.Thread(target=lambda: results.append(sandbox.run(spec("import time; time.sleep(30)"))))
    runner.start()
    deadline = time.monotonic() + 5
    while "e1" not in sandbox.running_executions() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sandbox.stop("e1") == 1
    runner.join(timeout=5)
    assert results and results[0].exit_code == 137 and sandbox.running_executions() == set()


def test_scripted_results_and_faults_replace_running_the_code() -> None:
    sandbox = FakeSandbox(
        scripted={"ok": RunResult(exit_code=0, stdout="scripted\n"), "down": SandboxUnavailable("engine gone")}
    )
    assert sandbox.run(spec("ok")).stdout == "scripted\n"
    with pytest.raises(SandboxUnavailable, match="engine gone"):
        sandbox.run(spec("down"))
    assert [s.code for s in sandbox.runs] == ["ok", "down"]


def test_an_unavailable_engine_fails_pings_and_runs() -> None:
    sandbox = FakeSandbox()
    sandbox.available = False
    assert sandbox.ping() is False
    with pytest.raises(SandboxUnavailable):
        sandbox.run(spec("print(1)"))


def test_images_that_do_not_exist_have_no_reference() -> None:
    sandbox = FakeSandbox(images={"tako-vm-default:latest"})
    assert (sandbox.image_ref("tako-vm-default:latest") or "").startswith("tako-vm-default@sha256:")
    assert sandbox.image_ref("tako-vm-other:latest") is None


def test_a_warm_pool_run_takes_a_ready_container_of_its_shape() -> None:
    sandbox = FakeSandbox(scripted={"x": RunResult(exit_code=0)})
    sandbox.pool_start(SHAPE, "default")
    assert [c.state for c in sandbox.pool_containers()] == ["ready"]
    assert sandbox.run(spec("x", warm_pool=True)).warm is True
    assert sandbox.run(spec("x", warm_pool=True)).warm is False  # none left
    assert sandbox.run(spec("x")).warm is None  # not a pooled run
    assert sandbox.pool_containers() == []


def test_pool_changes_yields_when_a_pooled_container_goes() -> None:
    sandbox = FakeSandbox()
    sandbox.pool_start(SHAPE, "default")
    changes = sandbox.pool_changes()
    seen = threading.Event()
    threading.Thread(target=lambda: (next(changes), seen.set()), daemon=True).start()
    time.sleep(0.05)
    sandbox.pool_remove(sandbox.pool_containers())
    assert seen.wait(5)
