"""A few values kept for a little while, in one process: what a crowd asks for over and over
(a finished answer's check, an ended answer's delta log) is worked out once per moment.

Shared by the views' threads and the streams' event loop: writes take a lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from typing import Any


class ShortMemory:
    """At most `at_most` values, each kept for `seconds`. When full, the expired ones go, and
    if none had expired, all of them (a crowd asks again at once)."""

    def __init__(self, seconds: float, at_most: int) -> None:
        self.seconds = seconds
        self.at_most = at_most
        self._kept: dict[Hashable, tuple[float, Any]] = {}
        self._writing = threading.Lock()

    def __len__(self) -> int:
        return len(self._kept)

    def recall(self, key: Hashable, default: Any = None) -> Any:
        """The value kept for `key`, else `default` (never kept, or kept too long ago)."""
        kept = self._kept.get(key)
        if kept is None or kept[0] <= time.monotonic():
            return default
        return kept[1]

    def keep(self, key: Hashable, value: Any) -> None:
        now = time.monotonic()
        with self._writing:
            if len(self._kept) >= self.at_most:
                for stale in [k for k, (until, _) in self._kept.items() if until <= now]:
                    del self._kept[stale]
                if len(self._kept) >= self.at_most:
                    self._kept.clear()
            self._kept[key] = (now + self.seconds, value)
