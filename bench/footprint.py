"""What the stack's memory does during the rush: peaks, and the growth per waiting visitor."""

from __future__ import annotations

from typing import Any

from bench import procs, stats
from bench.visitors import StackRun, StackVisit
from devtools.stack import Stack


def memory_figures(
    roots: dict[str, list[int]],
    before: dict[str, int | None],
    sampler: procs.MemorySampler,
    rush: StackRun,
    stack: Stack,
) -> dict[str, Any]:
    combined: list[tuple[float, int]] = []
    for instant, values in sampler.samples:
        present = [v for v in values.values() if v is not None]
        if len(present) == len(values):
            combined.append((instant, sum(present)))
    peak_at, peak_kib = max(combined, key=lambda item: item[1]) if combined else (None, None)
    before_kib = sum(v for v in before.values() if v is not None) if before else None
    waiting = [interval for v in rush.visits if (interval := waiting_interval(v)) is not None]
    peak_waiting = stats.peak_concurrent(waiting)
    per_waiting = None
    if peak_kib is not None and before_kib is not None and peak_waiting:
        per_waiting = (peak_kib - before_kib) / peak_waiting
    redis_pid = stack.redis.process.pid if stack.redis and stack.redis.process else None
    return {
        "available": procs.available(),
        "peak_hwm_kib": {name: procs.peak_rss_kib(pid) for name, pid in roots.items()},
        "redis_peak_hwm_kib": procs.peak_rss_kib(redis_pid) if redis_pid else None,
        "before_rush_kib": before,
        "before_rush_total_kib": before_kib,
        "rush_peak_kib": peak_kib,
        "rush_peak_by_tree_kib": {name: sampler.peak(name)[0] for name in roots},
        "rush_peak_waiting_at_that_moment": (
            stats.open_at(waiting, peak_at) if peak_at is not None else None
        ),
        "peak_waiting": peak_waiting,
        "per_waiting_kib": per_waiting,
        # The web process alone: it holds the waiting visitors' sockets and sessions, while
        # the worker's growth comes from the generations running, not from the line.
        "web_per_waiting_kib": _growth_per(sampler.peak("web")[0], before.get("web"), peak_waiting),
        "samples": len(sampler.samples),
        "processes": {name: len(procs.process_tree(pid)) for name, pid in roots.items()},
    }


def _growth_per(peak: int | None, before: int | None, count: int) -> float | None:
    if peak is None or before is None or not count:
        return None
    return (peak - before) / count


def waiting_interval(visit: StackVisit) -> tuple[float, float | None] | None:
    """When a visitor was in line without a slot: the server's own times where it has them.

    The visitor's submit-to-first-event span would also count the first wave, who never
    waited in line but did wait for the web process to answer their POST.
    """
    server = visit.server_stats or {}
    if visit.created_at is not None and server.get("queue_seconds") is not None:
        return visit.created_at, visit.created_at + server["queue_seconds"]
    if visit.submit_at is None:
        return None
    return visit.submit_at, visit.answer_started_at
