"""The wait estimate: when each place in line should start, from what runs and how long
answers recently took.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

DEFAULT_SERVICE_SECONDS = 30.0


SERVICE_SAMPLES = 50


@dataclass(frozen=True)
class QueueSnapshot:
    running_elapsed: list[float]  # seconds each in-flight generation has been running
    capacity: int
    mean_service: float  # recent mean seconds a generation holds a slot
    # Draining: nothing new starts until an operator lets the line move, so no estimate holds.
    on_hold: bool = False


def wait_estimates(snapshot: QueueSnapshot, positions: int) -> list[float]:
    """Seconds until each of the first `positions` in line would start.

    Each slot frees when its generation is expected to end (mean service time, never less than
    a little from now for the ones already overdue); then the line advances one by one onto the
    earliest free slot. This is the M/G/c picture without the statistics: honest enough while
    answers are of similar length, and it reacts at once to what is actually running.
    """
    if snapshot.capacity <= 0:
        return []
    mean = max(snapshot.mean_service, 0.1)
    free_at = [max(mean - elapsed, mean * 0.1) for elapsed in snapshot.running_elapsed]
    free_at = sorted(free_at)[: snapshot.capacity]
    free_at += [0.0] * (snapshot.capacity - len(free_at))
    heapq.heapify(free_at)
    estimates = []
    for _ in range(positions):
        start = heapq.heappop(free_at)
        estimates.append(start)
        heapq.heappush(free_at, start + mean)
    return estimates
