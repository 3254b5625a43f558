"""Rules of the code's layout that a reader relies on, checked on the source."""

from __future__ import annotations

import ast

from tests.support import ROOT


def imported_modules(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # from tests import conftest
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_test_module_imports_another_or_the_conftest() -> None:
    """Shared helpers live in tests/support.py; fixtures in conftest reach tests by name only."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            name
            for name in imported_modules(str(path.relative_to(ROOT)))
            if name == "tests.conftest" or name.startswith("tests.test_")
        )
        for path in sorted((ROOT / "tests").glob("test_*.py"))
    }
    assert {path: names for path, names in offenders.items() if names} == {}
