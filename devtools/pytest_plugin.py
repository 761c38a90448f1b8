"""Pytest plugin (`-p devtools.pytest_plugin`): a real Redis for the whole test session.

When REDIS_URL is set (CI points it at the machine's Redis) the tests use it; otherwise an
embedded redis-server is started before Django reads its settings, so `make test` works on a
fresh machine with nothing else running.
"""

from __future__ import annotations

import os

import pytest

from devtools.processes import EmbeddedRedis

_embedded: EmbeddedRedis | None = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    global _embedded
    if not os.environ.get("REDIS_URL"):
        _embedded = EmbeddedRedis().start()
        os.environ["REDIS_URL"] = _embedded.url


def pytest_unconfigure(config: pytest.Config) -> None:
    if _embedded is not None:
        _embedded.stop()
