"""Debian's Chromium under Playwright, for the browser tests (Playwright's own browser download
cannot work here)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# Every browser test module carries it, so that a machine without Chromium skips them, saying
# why, before their stack is started.
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Chromium is not installed (Debian: apt-get install chromium); CI installs it",
)


@contextmanager
def launched_chromium() -> Iterator[object]:
    """Headless Chromium (Playwright is imported here: only the browser tests need it)."""
    from playwright import sync_api as playwright_sync

    with playwright_sync.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()
