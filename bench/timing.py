"""Where the stack's time went, computed from the runs: slot hand-offs, utilisation, the idle
visitor's steps, delivery delay by phase, and how much later each wave of the line started
than on the floor."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bench import stats
from bench.floor import FloorRun, FloorVisit
from bench.visitors import StackRun, StackVisit


def handoff_gaps(intervals: Sequence[tuple[float, float]], slots: int) -> list[float]:
    """Seconds from a slot freeing to the next waiting visitor's generation starting.

    With a FIFO line of `slots` slots, the k-th start after the first wave takes the k-th slot
    to free, so pairing sorted finishes with sorted later starts measures dispatch latency
    without knowing which slot each generation held.
    """
    starts = sorted(start for start, _ in intervals)
    finishes = sorted(finish for _, finish in intervals)
    later = starts[slots:]
    return [start - finish for start, finish in zip(later, finishes, strict=False)]


def server_interval(visit: StackVisit) -> tuple[float, float] | None:
    server = visit.server_stats or {}
    queue, duration = server.get("queue_seconds"), server.get("duration_seconds")
    if visit.created_at is None or queue is None or duration is None:
        return None
    started = visit.created_at + queue
    return started, started + duration


def floor_interval(visit: FloorVisit) -> tuple[float, float] | None:
    if visit.acquired_at is None or visit.done_at is None:
        return None
    return visit.acquired_at, visit.done_at


def utilisation(intervals: Sequence[tuple[float, float]], slots: int, wall: float | None) -> float:
    if not wall or not intervals:
        return math.nan
    return sum(end - start for start, end in intervals) / (slots * wall)


def idle_breakdown(visits: Sequence[StackVisit]) -> dict[str, float | None]:
    """Where the idle time to first delta goes, from the server's own timestamps (median ms)."""
    post_to_created, queued, ttft, to_client = [], [], [], []
    for visit in visits:
        server = visit.server_stats or {}
        q, t = server.get("queue_seconds"), server.get("ttft_seconds")
        if None in (visit.created_at, visit.submit_at, visit.first_delta_at, q, t):
            continue
        assert visit.created_at is not None and visit.submit_at is not None
        assert visit.first_delta_at is not None
        post_to_created.append(visit.created_at - visit.submit_at)
        queued.append(q)
        ttft.append(t)
        to_client.append(visit.first_delta_at - (visit.created_at + q + t))
    return {
        "submit_to_row_created_ms": stats.ms(stats.median(post_to_created)),
        "row_created_to_worker_started_ms": stats.ms(stats.median(queued)),
        "worker_started_to_first_token_ms": stats.ms(stats.median(ttft)),
        "first_token_to_client_first_delta_ms": stats.ms(stats.median(to_client)),
        "post_response_ms": stats.ms(stats.median(stats.present([v.post_seconds for v in visits]))),
        "ws_open_after_submit_ms": stats.ms(
            stats.median(
                stats.present(
                    [
                        None
                        if v.ws_opened_at is None or v.submit_at is None
                        else v.ws_opened_at - v.submit_at
                        for v in visits
                    ]
                )
            )
        ),
    }


def delay_phases(run: StackRun, bucket: float = 5.0) -> dict[str, Any]:
    """Delivery delay while submissions were still being answered and afterwards, and over time.

    The rush starts with every visitor's POST at once; the web process answers them one after
    another while the first generations already stream, so the two phases load it differently.
    """
    answered = [
        v.submit_at + v.post_seconds
        for v in run.visits
        if v.submit_at is not None and v.post_seconds is not None
    ]
    storm_end = max(answered) if answered else run.start
    storm: list[float] = []
    steady: list[float] = []
    buckets: dict[int, list[float]] = {}
    for visit in run.visits:
        for stamp, delay in zip(visit.emitted, visit.delays, strict=True):
            (storm if stamp < storm_end else steady).append(delay)
            buckets.setdefault(int((stamp - run.start) // bucket), []).append(delay)
    return {
        "submissions_answered_after_s": storm_end - run.start,
        "during_submissions_ms": stats.in_ms(stats.summarize(storm)),
        "after_submissions_ms": stats.in_ms(stats.summarize(steady)),
        "by_emission_time": [
            {
                "from_s": key * bucket,
                "n": len(values),
                "p50_ms": stats.ms(stats.median(values)),
                "p99_ms": stats.ms(stats.percentile(values, 99)),
            }
            for key, values in sorted(buckets.items())
        ],
    }


def start_lag_by_wave(
    stack_rush: StackRun, floor_rush: FloorRun, slots: int
) -> list[dict[str, float | int | None]]:
    """How much later each wave of the line started generating on the stack than on the floor.

    Visitors are matched by index (the floor replays the stack's line order), and a wave is
    each `slots` consecutive places in that line. The stack's start is the server's own
    `started_at`, so the figure excludes delivery and shows where schedule delay accumulates.
    """
    floor_waited = {
        v.index: v.acquired_at - v.start_at for v in floor_rush.visits if v.acquired_at is not None
    }
    line = sorted(
        (v for v in stack_rush.visits if v.created_at is not None),
        key=lambda v: (v.created_at, v.index),
    )
    waves: dict[int, list[float]] = {}
    for place, visit in enumerate(line):
        interval = server_interval(visit)
        if interval is None or visit.index not in floor_waited:
            continue
        lag = (interval[0] - stack_rush.start) - floor_waited[visit.index]
        waves.setdefault(place // slots, []).append(lag)
    return [
        {"wave": wave + 1, "n": len(lags), "p50_s": stats.median(lags), "max_s": max(lags)}
        for wave, lags in sorted(waves.items())
    ]


def emission_split(
    stack_visits: Sequence[StackVisit], floor_visits: Sequence[FloorVisit]
) -> dict[str, float | None]:
    """Split time to first delta at the backend's emission stamp of that delta's first token:
    before it is the path to the backend (queue, dispatch, prefill), after it is delivery."""

    def before(start: float | None, stamp: float | None) -> float | None:
        return None if start is None or stamp is None else stamp - start

    def after(stamp: float | None, received: float | None) -> float | None:
        return None if stamp is None or received is None else received - stamp

    return {
        "stack_submit_to_emission_ms": stats.ms(
            stats.median(stats.present(before(v.submit_at, v.first_stamp) for v in stack_visits))
        ),
        "floor_start_to_emission_ms": stats.ms(
            stats.median(stats.present(before(v.start_at, v.first_stamp) for v in floor_visits))
        ),
        "stack_first_delta_delivery_ms": stats.ms(
            stats.median(
                stats.present(after(v.first_stamp, v.first_delta_at) for v in stack_visits)
            )
        ),
        "floor_first_delta_delivery_ms": stats.ms(
            stats.median(
                stats.present(after(v.first_stamp, v.first_delta_at) for v in floor_visits)
            )
        ),
    }
