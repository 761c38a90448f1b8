"""The browser tests' Chromium: one per test module that asks for `browser`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.chromium import launched_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with launched_chromium() as chromium:
        yield chromium
