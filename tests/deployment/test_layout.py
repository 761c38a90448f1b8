"""The house rules the code keeps, checked on every run: no import circles, no module too long
without saying why, one way of naming tests, no block of production code written twice."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("playground", "inference", "devtools", "bench")
LONG_MODULE_LINES = 500
# A long module says why in its docstring, with these words.
LONG_BECAUSE = re.compile(r"long because", re.IGNORECASE)
# A test's name is a sentence about the behaviour it checks: four words at least, and never
# the placeholder subject "it".
TEST_NAME = re.compile(r"test_(?!it_)[a-z0-9]+(?:_[a-z0-9]+){3,}")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports, wherever in it (deferred imports count too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            targets = [base, *[f"{base}.{alias.name}" for alias in node.names]]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_one_that_imports_it_back() -> None:
    known = modules()
    graph = {name: imported_modules(name, path, known) for name, path in known.items()}

    assert circles(graph) == []


def test_the_import_check_finds_a_circle_when_there_is_one() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

    assert circles(graph) == [["a", "b", "c"]]


def test_a_module_over_five_hundred_lines_says_why_in_its_docstring() -> None:
    unexplained = []
    for name, path in modules().items():
        text = path.read_text()
        if text.count("\n") > LONG_MODULE_LINES:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if not LONG_BECAUSE.search(docstring):
                unexplained.append(f"{name} ({text.count(chr(10))} lines)")

    assert unexplained == []


def test_every_test_is_named_for_the_behaviour_it_checks() -> None:
    badly_named = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            is_test = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if is_test and node.name.startswith("test_") and not TEST_NAME.fullmatch(node.name):
                badly_named.append(f"{path.relative_to(ROOT)}::{node.name}")

    assert badly_named == []


@pytest.mark.skipif(
    shutil.which("duplicates") is None,
    reason="the `duplicates` tool is not installed on this machine",
)
def test_no_block_of_production_code_is_written_twice() -> None:
    pairs = []
    for package in ("playground", "inference", "devtools"):
        found = subprocess.run(
            ["duplicates", "--repo", str(ROOT / package), "--seconds", "60", "--most", "50"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        assert found and not found[-1].startswith("incomplete"), found
        # Rows name the places, `D1 a.py:10-24 ~ b.py:40-54`. A row marked `shape` shares only
        # the form of its lines (alike but for names and values: two regex tables, two field
        # lists), a place to look rather than code written twice; migrations are generated.
        pairs += [
            row
            for row in found
            if re.match(r"D\d+ ", row) and "shape" not in row and "migrations/" not in row
        ]

    assert pairs == []
