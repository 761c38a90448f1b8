"""Memory of process trees, read from /proc (Linux only; elsewhere every figure is None)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")


def _parent_of(pid: int) -> int | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; it ends at the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def process_tree(root: int) -> list[int]:
    """`root` and all its living descendants."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir() if PROC.is_dir() else ():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def status_kib(pid: int, key: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM), or None if the process is gone."""
    try:
        with open(PROC / str(pid) / "status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def tree_kib(pids: list[int], key: str) -> int | None:
    values = [v for v in (status_kib(pid, key) for pid in pids) if v is not None]
    return sum(values) if values else None


@dataclass
class MemorySampler:
    """Samples the summed VmRSS of named process trees every `interval` seconds, in a thread.

    A thread rather than an asyncio task: reading /proc must not delay the event loop that
    timestamps the visitors' WebSocket frames. Descendants are looked up only every
    `rescan` seconds because scanning all of /proc is the expensive part.
    """

    roots: Mapping[str, int]
    interval: float = 0.1
    rescan: float = 2.0
    clock: Callable[[], float] = time.time
    samples: list[tuple[float, dict[str, int | None]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def snapshot(self) -> dict[str, int | None]:
        return {name: tree_kib(process_tree(pid), "VmRSS") for name, pid in self.roots.items()}

    def start(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, name="bench-memory", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        trees: dict[str, list[int]] = {}
        scanned = -float("inf")
        while not self._stop.is_set():
            now = time.monotonic()
            if now - scanned >= self.rescan:
                trees = {name: process_tree(pid) for name, pid in self.roots.items()}
                scanned = now
            values = {name: tree_kib(pids, "VmRSS") for name, pids in trees.items()}
            self.samples.append((self.clock(), values))
            self._stop.wait(self.interval)

    def peak(self, name: str) -> tuple[int | None, float | None]:
        """The highest sampled RSS (KiB) of a tree and when it was sampled."""
        best: tuple[int | None, float | None] = (None, None)
        for instant, values in self.samples:
            value = values.get(name)
            if value is not None and (best[0] is None or value > best[0]):
                best = (value, instant)
        return best


def peak_rss_kib(root: int) -> int | None:
    """Sum of VmHWM (each process's lifetime peak RSS) over a tree: an upper bound of its peak."""
    return tree_kib(process_tree(root), "VmHWM")


def available() -> bool:
    return PROC.is_dir() and (PROC / str(os.getpid()) / "status").exists()
