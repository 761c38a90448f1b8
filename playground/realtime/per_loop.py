"""One object per running event loop, made the first time that loop asks for it.

Redis clients, the generations' pipe and the worker's watches belong to the loop they were
made on. A web process has one loop and a worker's generations share one, but tests (and
anything calling asyncio.run) make loop after loop: the objects of closed loops are dropped
when the next one is made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._made: dict[asyncio.AbstractEventLoop, T] = {}

    def get(self) -> T:
        """The running loop's object."""
        loop = asyncio.get_running_loop()
        found = self._made.get(loop)
        if found is None:
            for stale in [known for known in self._made if known.is_closed()]:
                del self._made[stale]
            found = self._made[loop] = self._make()
        return found
