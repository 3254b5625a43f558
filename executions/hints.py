"""What each error type means, in one line, and what to try: shown on the execution page."""

from __future__ import annotations

from dataclasses import dataclass

from executions.sandbox.classify import ERROR_TYPES


@dataclass(frozen=True)
class Hint:
    explanation: str
    suggestion: str


HINTS: dict[str, Hint] = {
    "syntax_error": Hint("Python could not parse the code.", "Check the line the traceback points at."),
    "import_error": Hint(
        "A module could not be imported.",
        "This package is not in this environment; try `data-processing` (pandas, numpy, matplotlib) or "
        "`ml-inference` (scikit-learn), or add it under requirements.",
    ),
    "type_error": Hint("A value had the wrong type for an operation.", "Check the types in the failing line."),
    "value_error": Hint("A value had the right type but a bad content.", "Check the input the line used."),
    "key_error": Hint("A dictionary key was missing.", "Check the keys of input_data (use .get() for optional ones)."),
    "index_error": Hint("A list index was out of range.", "Check the length before indexing."),
    "attribute_error": Hint("An object had no such attribute.", "Check the name and the object's type."),
    "name_error": Hint("A name was used before it was defined.", "Check spelling and imports."),
    "file_not_found": Hint("A file did not exist.", "Input is at /input/data.json; write results to /output/."),
    "recursion_error": Hint("The recursion went too deep.", "Use a loop or lower the depth."),
    "division_error": Hint("A number was divided by zero.", "Guard the divisor (the input may hold a 0)."),
    "encoding_error": Hint("Text could not be encoded or decoded.", "Check the encoding of the data."),
    "json_error": Hint("Some JSON was invalid.", "If it is /output/result.json, write it with json.dump()."),
    "permission": Hint("The sandbox refused an operation.", "Only /tmp and /output are writable."),
    "os_error": Hint("An operating-system call failed.", "The root filesystem, /code and /input are read-only."),
    "network_error": Hint("A connection failed.", "The sandbox has no network unless the environment enables it."),
    "network_timeout": Hint("A network operation timed out.", "The sandbox has no network by default."),
    "runtime_error": Hint("The program failed or exited with a non-zero code.", "Read stderr for the cause."),
    "timeout": Hint("The code ran longer than its timeout.", "Raise the timeout or make the code faster."),
    "oom": Hint(
        "The program used more memory than the environment allows.", "Use less memory or a larger environment."
    ),
    "killed": Hint("The process was killed (SIGKILL).", "It may have used too many resources."),
    "cancelled": Hint("The job was cancelled.", "Rerun it if it was cancelled by mistake."),
    "segfault": Hint("The process crashed (segmentation fault).", "Usually a native library bug or bad ctypes use."),
    "abort": Hint("The process aborted (SIGABRT).", "A native library gave up; read stderr."),
    "arithmetic_error": Hint("A floating-point exception (SIGFPE).", "A native division by zero or overflow."),
    "bus_error": Hint("A bus error (SIGBUS).", "Often memory-mapped files or misaligned access."),
    "pipe_error": Hint("A broken pipe (SIGPIPE).", "A process wrote to a pipe nobody reads."),
    "dependency_error": Hint("The run's requirements could not be installed.", "Check the package names and versions."),
    "service_unavailable": Hint(
        "Docker was unavailable, so the code never ran.", "It is in the dead letter queue; an admin can requeue it."
    ),
    "internal_error": Hint(
        "The service failed, not your code.", "It is in the dead letter queue; an admin can requeue it."
    ),
}

assert set(HINTS) == set(ERROR_TYPES), "every error type has a hint"
