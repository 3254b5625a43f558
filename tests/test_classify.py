"""The classification tables, as pure functions (the real-container cases are in test_error_types)."""

from __future__ import annotations

import pytest

from executions.sandbox import ExceptionReport
from executions.sandbox.classify import classify_exit, error_type_for_exception


def _exc(*names: str) -> ExceptionReport:
    return ExceptionReport(class_names=tuple(names), message="x")


@pytest.mark.parametrize(
    ("class_names", "expected"),
    [
        (("json.decoder.JSONDecodeError", "builtins.ValueError", "builtins.Exception"), "json_error"),
        (("builtins.UnicodeDecodeError", "builtins.UnicodeError", "builtins.ValueError"), "encoding_error"),
        (
            ("builtins.ConnectionRefusedError", "builtins.ConnectionError", "builtins.OSError"),
            "network_error",
        ),
        (("builtins.FileNotFoundError", "builtins.OSError"), "file_not_found"),
        (("builtins.IsADirectoryError", "builtins.OSError"), "os_error"),
        (("builtins.IndentationError", "builtins.SyntaxError"), "syntax_error"),
        (("__main__.ValueError", "builtins.Exception"), "runtime_error"),
        (("builtins.RuntimeError", "builtins.Exception"), "runtime_error"),
    ],
)
def test_it_walks_the_class_hierarchy_most_specific_first(class_names: tuple[str, ...], expected: str) -> None:
    assert error_type_for_exception(class_names) == expected


def test_it_prefers_our_timeout_over_the_kill_exit_code() -> None:
    outcome = classify_exit(exit_code=137, timed_out=True, oom_killed=False, exception=None, timeout=5)
    assert (outcome.status, outcome.error_type, outcome.message) == (
        "timeout",
        "timeout",
        "Execution timeout exceeded (5s)",
    )


def test_it_calls_137_oom_only_when_docker_says_so() -> None:
    oom = classify_exit(exit_code=137, timed_out=False, oom_killed=True, exception=None, timeout=5)
    killed = classify_exit(exit_code=137, timed_out=False, oom_killed=False, exception=None, timeout=5)
    assert (oom.status, oom.error_type) == ("oom", "oom")
    assert (killed.status, killed.error_type) == ("failed", "killed")


def test_it_ignores_an_exception_record_when_the_program_exited_zero() -> None:
    outcome = classify_exit(exit_code=0, timed_out=False, oom_killed=False, exception=_exc("x"), timeout=5)
    assert outcome.success


def test_a_nonzero_exit_without_exception_is_a_runtime_error() -> None:
    outcome = classify_exit(exit_code=3, timed_out=False, oom_killed=False, exception=None, timeout=5)
    assert (outcome.error_type, outcome.message) == ("runtime_error", "Process exited with code 3")


def test_the_error_types_are_those_of_the_api_contract() -> None:
    from executions.sandbox.classify import ERROR_TYPES

    documented = {
        "oom", "cancelled", "segfault", "abort", "arithmetic_error", "bus_error", "pipe_error", "syntax_error",
        "import_error", "type_error", "value_error", "key_error", "index_error", "attribute_error", "name_error",
        "file_not_found", "recursion_error", "division_error", "encoding_error", "json_error", "permission",
        "os_error", "network_error", "network_timeout", "runtime_error", "timeout", "killed",
        "service_unavailable", "internal_error", "dependency_error",
    }  # fmt: skip
    assert set(ERROR_TYPES) == documented and len(ERROR_TYPES) == len(documented)
