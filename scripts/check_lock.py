#!/usr/bin/env python3
"""Refuses to install from a lock file that no longer matches pyproject.toml.

Each lock (requirements.txt, requirements-dev.txt) records, in its first line, a digest of the dependency lists it was
compiled from. `make lock` writes the locks; this script (stdlib only, run before every install)
compares. Usage: check_lock.py [NAME ...]  (default: every lock; --header NAME prints the first line
the lock NAME must carry)
"""

from __future__ import annotations

import hashlib
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Each lock and the dependency lists of pyproject.toml it holds.
LOCKS = {
    "runtime": ("project",),
    "dev": ("project", "test", "browser"),
}


def inputs_digest(name: str) -> str:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lists = []
    for part in LOCKS[name]:
        deps = pyproject["project"]["dependencies"] if part == "project" else pyproject["dependency-groups"][part]
        lists.append(f"[{part}]\n" + "\n".join(sorted(d.strip() for d in deps)))
    lists.append(f"requires-python {pyproject['project']['requires-python']}")
    return hashlib.sha256("\n".join(lists).encode()).hexdigest()


def lock_path(name: str) -> Path:
    return ROOT / ("requirements.txt" if name == "runtime" else f"requirements-{name}.txt")


def header(name: str) -> str:
    return f"# inputs: sha256:{inputs_digest(name)} (pyproject.toml; regenerate with `make lock`)"


def main(argv: list[str]) -> int:
    if argv[:1] == ["--path"]:
        print(lock_path(argv[1]).relative_to(ROOT))
        return 0
    if argv[:1] == ["--header"]:
        print(header(argv[1]))
        return 0
    stale = []
    for name in argv or LOCKS:
        path = lock_path(name)
        first = path.read_text().splitlines()[0] if path.exists() else ""
        if first != header(name):
            stale.append(str(path.relative_to(ROOT)))
    if stale:
        print(f"lock out of date with pyproject.toml: {', '.join(stale)}; run `make lock` and commit", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
