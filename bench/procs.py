"""CPU and memory of process trees, read from /proc (Linux only; elsewhere every figure is
None), and waiting for a machine quiet enough to measure on."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.console import say

PROC = Path("/proc")


def _parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if len(fields) > 1 else None


def process_tree(root: int | Sequence[int]) -> list[int]:
    """`root` (one pid or several) and all their living descendants."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir() if PROC.is_dir() else ():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    tree: list[int] = []
    todo = [root] if isinstance(root, int) else list(root)
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.append(pid)
            todo.extend(children.get(pid, ()))
    return tree


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name: index 0 is field 3 (state).

    The command name (field 2) may contain spaces and parentheses; it ends at the last ')'.
    """
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return []
    return stat[stat.rfind(")") + 2 :].split()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time consumed so far by these processes (all their threads)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if len(fields) > 12:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs since boot, from the first line of /proc/stat."""
    try:
        first = (PROC / "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return 0.0, 0.0
    values = [float(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass
class CpuMeter:
    """CPU used by named process trees (in cores) and by the whole machine, over an interval."""

    roots: Mapping[str, Sequence[int]]
    # Measured without descendants: the benchmark's own process is the parent of the stack
    # and the simulator, which have names of their own.
    alone: frozenset[str] = frozenset({"bench"})
    _start: dict[str, float] = field(default_factory=dict)
    _machine: tuple[float, float] = (0.0, 0.0)
    _began: float = 0.0

    def _used(self, name: str, pids: Sequence[int]) -> float:
        return cpu_seconds(list(pids) if name in self.alone else process_tree(pids))

    def start(self) -> CpuMeter:
        self._start = {name: self._used(name, pid) for name, pid in self.roots.items()}
        self._machine = machine_cpu()
        self._began = time.monotonic()
        return self

    def stop(self) -> dict[str, float]:
        """Cores used by each tree on average, plus `machine_busy` (0..1 of all CPUs)."""
        elapsed = max(time.monotonic() - self._began, 1e-9)
        used = {
            name: (self._used(name, pid) - self._start.get(name, 0.0)) / elapsed
            for name, pid in self.roots.items()
        }
        busy, total = machine_cpu()
        span = total - self._machine[1]
        cpus = float(os.cpu_count() or 0)
        used["machine_busy"] = (busy - self._machine[0]) / span if span > 0 else float("nan")
        # Whatever else ran on the machine meanwhile (other test suites, browsers): on a
        # shared box this is what makes one run's ratios differ from the next one's.
        ours = sum(value for key, value in used.items() if key != "machine_busy")
        used["others"] = max(0.0, used["machine_busy"] * cpus - ours)
        used["cpus"] = cpus
        return used


def foreign_load(roots: Mapping[str, Sequence[int]], seconds: float = 2.0) -> float:
    """Cores used by processes outside `roots` over the next `seconds`."""
    meter = CpuMeter(roots).start()
    time.sleep(seconds)
    return meter.stop()["others"]


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

    roots: Mapping[str, Sequence[int]]
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


def peak_rss_kib(root: int | Sequence[int]) -> int | None:
    """Sum of VmHWM (each process's lifetime peak RSS) over a tree: an upper bound of its peak."""
    return tree_kib(process_tree(root), "VmHWM")


def available() -> bool:
    return PROC.is_dir() and (PROC / str(os.getpid()) / "status").exists()


QUIET_CORES = 0.2
QUIET_PATIENCE = 180.0


async def wait_for_quiet(roots: dict[str, list[int]], what: str) -> float:
    """Wait (a while) until nothing outside the benchmark uses the CPU; return that load.

    The machine may be shared with other work. A run under foreign load is still reported,
    with the load it ran under, so its ratios can be judged.
    """
    deadline = time.monotonic() + QUIET_PATIENCE
    while True:
        load = await asyncio.to_thread(foreign_load, roots, 2.0)
        if load <= QUIET_CORES:
            return load
        if time.monotonic() >= deadline:
            say(f"  warning: other processes use {load:.2f} cores; measuring {what} anyway")
            return load
        say(f"  other processes use {load:.2f} cores; waiting for a quiet machine ({what})")
        await asyncio.sleep(8)
