"""Where a request's time goes: named steps, answered as a `Server-Timing` header.

A view starts a record; code anywhere below it (services, the sandbox, in whatever thread the
request's context was copied to) marks the end of each step; the view puts the record in its
response. Outside a started record a mark costs one context lookup and records nothing. The
benchmark (bench/execute_latency.py) reads the header to split a request's time into its steps.
Standard library only: the sandbox marks its steps too.
"""

from __future__ import annotations

import itertools
import time
from contextvars import ContextVar

_steps: ContextVar[list[tuple[str, float]] | None] = ContextVar("timing_steps", default=None)


def timing_start() -> list[tuple[str, float]]:
    """Start recording this request's steps (from now); returns the record for timing_header."""
    steps = [("", time.perf_counter())]
    _steps.set(steps)
    return steps


def timing_mark(name: str) -> None:
    """The step `name` ends now (it began where the previous one ended)."""
    steps = _steps.get()
    if steps is not None:
        steps.append((name, time.perf_counter()))


def timing_header(steps: list[tuple[str, float]]) -> str:
    """`name;dur=ms, …` in the order marked; a name marked twice (a retry) adds up."""
    durations: dict[str, float] = {}
    for (_, before), (name, at) in itertools.pairwise(steps):
        durations[name] = durations.get(name, 0.0) + (at - before) * 1000
    return ", ".join(f"{name};dur={ms:.2f}" for name, ms in durations.items())
