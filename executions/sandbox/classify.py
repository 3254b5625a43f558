"""How a run ended → the error type of docs/API.md. Pure functions over two tables.

Order of evidence: our own timeout kill, then a fatal signal (exit code 128+N), then the
exception the in-container launcher recorded, then any other non-zero exit.
"""

from __future__ import annotations

from dataclasses import dataclass

from executions.sandbox import ExceptionReport

# Exit code (128 + signal) → (error type, message).
SIGNAL_ERRORS: dict[int, tuple[str, str]] = {
    137: ("killed", "Process killed (SIGKILL)"),  # "oom" instead when Docker says OOM-killed
    143: ("cancelled", "Process terminated (SIGTERM)"),
    139: ("segfault", "Segmentation fault (SIGSEGV)"),
    134: ("abort", "Process aborted (SIGABRT)"),
    136: ("arithmetic_error", "Floating point exception (SIGFPE)"),
    135: ("bus_error", "Bus error (SIGBUS)"),
    141: ("pipe_error", "Broken pipe (SIGPIPE)"),
}

# Exception class (qualified name) → error type. The exception's own class hierarchy is walked
# from the most specific class up, so JSONDecodeError is json_error although it is a ValueError,
# and ConnectionRefusedError is network_error although it is an OSError.
EXCEPTION_ERRORS: dict[str, str] = {
    "builtins.SyntaxError": "syntax_error",  # IndentationError and TabError too
    "builtins.ImportError": "import_error",  # ModuleNotFoundError too
    "builtins.TypeError": "type_error",
    "builtins.ValueError": "value_error",
    "builtins.KeyError": "key_error",
    "builtins.IndexError": "index_error",
    "builtins.AttributeError": "attribute_error",
    "builtins.NameError": "name_error",
    "builtins.FileNotFoundError": "file_not_found",
    "builtins.RecursionError": "recursion_error",
    "builtins.ZeroDivisionError": "division_error",
    "builtins.UnicodeError": "encoding_error",
    "json.decoder.JSONDecodeError": "json_error",
    "builtins.PermissionError": "permission",
    "builtins.ConnectionError": "network_error",
    "builtins.TimeoutError": "network_timeout",  # socket.timeout is TimeoutError
    "builtins.OSError": "os_error",
    "builtins.MemoryError": "oom",
}

# Raised by the service itself rather than read off the program.
SYSTEM_ERRORS = ("timeout", "killed", "runtime_error", "dependency_error", "service_unavailable", "internal_error")

# Every error type there is (docs/API.md); the OpenAPI document's enum is this list.
ERROR_TYPES: tuple[str, ...] = tuple(
    dict.fromkeys([*(t for t, _ in SIGNAL_ERRORS.values()), "oom", *EXCEPTION_ERRORS.values(), *SYSTEM_ERRORS])
)

OOM_MESSAGE = "Execution exceeded memory limit"
CANCELLED_MESSAGE = "Cancelled by request"

# Error types whose record status is named after them; every other failure is "failed".
_STATUS_BY_ERROR = {"timeout": "timeout", "oom": "oom", "cancelled": "cancelled"}


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded | failed | timeout | oom | cancelled
    error_type: str | None = None
    message: str | None = None
    phase: str | None = None  # startup | execution | output

    @property
    def success(self) -> bool:
        return self.status == "succeeded"


def failure(error_type: str, message: str, *, phase: str = "execution") -> Outcome:
    return Outcome(_STATUS_BY_ERROR.get(error_type, "failed"), error_type, message, phase)


def error_type_for_exception(class_names: tuple[str, ...]) -> str:
    for name in class_names:
        if name in EXCEPTION_ERRORS:
            return EXCEPTION_ERRORS[name]
    return "runtime_error"


def classify_exit(
    *,
    exit_code: int | None,
    timed_out: bool,
    oom_killed: bool,
    exception: ExceptionReport | None,
    timeout: int,
    startup_timed_out: bool = False,
    startup_timeout: float = 0,
    dependency_error: str | None = None,
    cancelled: bool = False,
) -> Outcome:
    """Classify how the user's program ended (not whether its output was valid)."""
    if cancelled:
        return failure("cancelled", CANCELLED_MESSAGE)
    if startup_timed_out:
        return failure("timeout", f"Startup exceeded startup_timeout ({startup_timeout:g}s)", phase="startup")
    if dependency_error is not None:
        return failure("dependency_error", dependency_error, phase="startup")
    if timed_out:
        return failure("timeout", f"Execution timeout exceeded ({timeout}s)")
    if exit_code == 137 and oom_killed:
        return failure("oom", OOM_MESSAGE)
    if exit_code in SIGNAL_ERRORS:
        return failure(*SIGNAL_ERRORS[exit_code])
    if exception is not None and exit_code != 0:
        error_type = error_type_for_exception(exception.class_names)
        return failure(error_type, exception.message)
    if exit_code is None:
        return failure("killed", "Process ended without an exit status")
    if exit_code != 0:
        return failure("runtime_error", f"Process exited with code {exit_code}")
    return Outcome("succeeded")
