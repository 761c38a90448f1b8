"""The Django side's fixtures, from tests/support/django_fixtures.py: a clean Redis for every
test here (autouse), and the fixtures these tests ask for by name; and `sim`, a real
simulator on a loopback port as the only backend, for the tests that run real generations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.django_fixtures import (
    backend,
    clean_redis,
    enqueued,
    make_visitor,
    pytest_configure,
    samples,
    visitor,
)
from tests.support.simulator import running_simulator

# Found by pytest under these names, here.
__all__ = [
    "backend",
    "clean_redis",
    "enqueued",
    "make_visitor",
    "pytest_configure",
    "samples",
    "visitor",
]


@pytest.fixture
def sim(settings: Any) -> Iterator[str]:
    with running_simulator() as url:
        settings.TGI_URLS = [url]
        settings.GENERATION_CONCURRENCY = 2
        yield url
