"""Turning the runs into figures with targets, a readable table and a JSON document."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from bench import stats
from bench.floor import FloorRun, FloorVisit
from bench.visitors import StackRun, StackVisit

# Targets of the issue.
WALL_RATIO = 1.05
TTFD_RATIO = 1.05
IDLE_TTFD_EXTRA_MS = 30.0
DELAY_P50_MS = 5.0
DELAY_P99_MS = 100.0
ETA_ERROR = 0.25


@dataclass
class Figure:
    key: str
    label: str
    unit: str
    stack: float | None
    floor: float | None = None
    compare: str = ""  # "ratio", "diff" or "" (nothing to compare with)
    target: str = ""
    passed: bool | None = None  # None: informational, or nothing to judge

    @property
    def comparison(self) -> float | None:
        if self.compare == "ratio":
            return stats.ratio(self.stack, self.floor)
        if self.compare == "diff":
            return stats.difference(self.stack, self.floor)
        return None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "comparison": self.comparison}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


T = TypeVar("T")


def _values(items: Iterable[T | None]) -> list[T]:
    return [item for item in items if item is not None]


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


def _server_interval(visit: StackVisit) -> tuple[float, float] | None:
    server = visit.server_stats or {}
    queue, duration = server.get("queue_seconds"), server.get("duration_seconds")
    if visit.created_at is None or queue is None or duration is None:
        return None
    started = visit.created_at + queue
    return started, started + duration


def _floor_interval(visit: FloorVisit) -> tuple[float, float] | None:
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
        "submit_to_row_created_ms": _ms(stats.median(post_to_created)),
        "row_created_to_worker_started_ms": _ms(stats.median(queued)),
        "worker_started_to_first_token_ms": _ms(stats.median(ttft)),
        "first_token_to_client_first_delta_ms": _ms(stats.median(to_client)),
        "post_response_ms": _ms(stats.median(_values([v.post_seconds for v in visits]))),
        "ws_open_after_submit_ms": _ms(
            stats.median(
                _values(
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


def build(
    *,
    slots: int,
    stack_rush: StackRun,
    floor_rush: FloorRun,
    stack_idle: Sequence[StackVisit],
    floor_idle: Sequence[FloorVisit],
    memory: dict[str, Any],
) -> tuple[list[Figure], dict[str, Any]]:
    """The figures of the issue (with targets) and the diagnostics behind them."""
    visits = stack_rush.visits
    stack_ttfd = _values([v.ttfd for v in visits])
    floor_ttfd = _values([v.ttfd for v in floor_rush.visits])
    stack_delays = [d for v in visits for d in v.delays]
    live_delays = [d for v in visits for d in v.live_delays]
    floor_delays = [d for v in floor_rush.visits for d in v.delays]
    eta_errors = _values([stats.eta_error(v.predicted_wait, v.actual_wait) for v in visits])
    overloaded = sum(1 for v in visits if v.final_code == "overloaded" or v.refusal == "overloaded")
    lost = sum(1 for v in visits if not v.ok)
    rose = sum(1 for v in visits if stats.position_rose(v.positions))
    floor_failed = sum(1 for v in floor_rush.visits if v.error or v.done_at is None)
    floor_overloaded = sum(1 for v in floor_rush.visits if (v.error or "").startswith("overloaded"))

    wall = stack_rush.wall if stack_rush.complete else None
    wall_ratio = stats.ratio(wall, floor_rush.wall)
    ttfd_stack, ttfd_floor = stats.median(stack_ttfd), stats.median(floor_ttfd)
    idle_stack = _ms(stats.median(_values([v.ttfd for v in stack_idle])))
    idle_floor = _ms(stats.median(_values([v.ttfd for v in floor_idle])))
    delay_p50 = _ms(stats.median(stack_delays))
    delay_p99 = _ms(stats.percentile(stack_delays, 99))
    eta_median = stats.median(eta_errors)

    figures = [
        Figure(
            "rush_wall_s",
            "rush wall time (all answers done)",
            "s",
            wall,
            floor_rush.wall,
            "ratio",
            f"≤ {WALL_RATIO:.2f} × floor",
            None if wall_ratio is None else wall_ratio <= WALL_RATIO,
        ),
        Figure(
            "rush_ttfd_p50_s",
            "time to first delta p50, rush",
            "s",
            ttfd_stack,
            ttfd_floor,
            "ratio",
            f"≤ {TTFD_RATIO:.2f} × floor",
            _ratio_within(ttfd_stack, ttfd_floor, TTFD_RATIO),
        ),
        Figure(
            "idle_ttfd_ms",
            "time to first delta, idle (median)",
            "ms",
            idle_stack,
            idle_floor,
            "diff",
            f"≤ floor + {IDLE_TTFD_EXTRA_MS:.0f} ms",
            None
            if idle_stack is None or idle_floor is None
            else idle_stack <= idle_floor + IDLE_TTFD_EXTRA_MS,
        ),
        Figure(
            "rush_delay_p50_ms",
            "emission → receipt delay p50, rush",
            "ms",
            delay_p50,
            _ms(stats.median(floor_delays)),
            "diff",
            f"≤ {DELAY_P50_MS:.0f} ms",
            stats.within(delay_p50, DELAY_P50_MS),
        ),
        Figure(
            "rush_delay_p99_ms",
            "emission → receipt delay p99, rush",
            "ms",
            delay_p99,
            _ms(stats.percentile(floor_delays, 99)),
            "diff",
            f"≤ {DELAY_P99_MS:.0f} ms",
            stats.within(delay_p99, DELAY_P99_MS),
        ),
        Figure(
            "overload_errors",
            "overload errors reaching visitors",
            "",
            overloaded,
            floor_overloaded,
            "",
            "0",
            overloaded == 0,
        ),
        Figure(
            "lost_or_stuck",
            "lost or stuck answers",
            "",
            lost,
            floor_failed,
            "",
            "0",
            lost == 0,
        ),
        Figure(
            "position_rose",
            "visitors whose place in line rose",
            "",
            rose,
            None,
            "",
            "0",
            rose == 0,
        ),
        Figure(
            "eta_error_median_pct",
            "ETA error at submit, median |pred−act|/act",
            "%",
            None if eta_median is None else eta_median * 100,
            None,
            "",
            f"≤ {ETA_ERROR * 100:.0f}%",
            stats.within(eta_median, ETA_ERROR),
        ),
    ]
    for name in ("web", "worker"):
        figures.append(
            Figure(f"peak_rss_{name}_mib", f"peak RSS, {name} (VmHWM)", "MiB", _mib(memory, name))
        )
    figures.append(
        Figure(
            "rush_rss_peak_mib",
            "peak RSS web+worker during rush",
            "MiB",
            _kib_to_mib(memory.get("rush_peak_kib")),
        )
    )
    figures.append(
        Figure(
            "rss_per_waiting_kib",
            "RSS growth per waiting visitor, web+worker",
            "KiB",
            memory.get("per_waiting_kib"),
        )
    )
    figures.append(
        Figure(
            "web_rss_per_waiting_kib",
            "RSS growth per waiting visitor, web",
            "KiB",
            memory.get("web_per_waiting_kib"),
        )
    )

    stack_intervals = _values(_server_interval(v) for v in visits)
    floor_intervals = _values(_floor_interval(v) for v in floor_rush.visits)
    signed_eta = _values(stats.signed_eta_error(v.predicted_wait, v.actual_wait) for v in visits)
    diagnostics = {
        "rush": {
            "stack_ttfd_s": stats.summarize(stack_ttfd),
            "floor_ttfd_s": stats.summarize(floor_ttfd),
            "stack_delay_ms": _scaled(stats.summarize(stack_delays)),
            "stack_delay_live_only_ms": _scaled(stats.summarize(live_delays)),
            "stack_delay_phases": delay_phases(stack_rush),
            "start_lag_vs_floor_by_wave": start_lag_by_wave(stack_rush, floor_rush, slots),
            "floor_delay_ms": _scaled(stats.summarize(floor_delays)),
            "stack_post_seconds": stats.summarize(_values([v.post_seconds for v in visits])),
            "stack_handoff_gap_ms": _scaled(stats.summarize(handoff_gaps(stack_intervals, slots))),
            "floor_handoff_gap_ms": _scaled(stats.summarize(handoff_gaps(floor_intervals, slots))),
            "stack_slot_utilisation": utilisation(stack_intervals, slots, wall),
            "floor_slot_utilisation": utilisation(floor_intervals, slots, floor_rush.wall),
            "stack_service_s": stats.summarize([b - a for a, b in stack_intervals]),
            "floor_service_s": stats.summarize([b - a for a, b in floor_intervals]),
            "eta_error": stats.summarize(eta_errors),
            "eta_signed_error_median": stats.median(signed_eta),
            "eta_judged_visitors": len(eta_errors),
            "reconnects": sum(v.reconnects for v in visits),
            "seq_errors": sum(v.seq_errors for v in visits),
            "final_types": _count([v.final_type or "none" for v in visits]),
            "problems": [v.summary() for v in visits if not v.ok],
        },
        "idle": {
            "stack_ttfd_ms": [_ms(v.ttfd) for v in stack_idle],
            "floor_ttfd_ms": [_ms(v.ttfd) for v in floor_idle],
            "stack_breakdown": idle_breakdown(stack_idle),
            **_emission_split(stack_idle, floor_idle),
        },
    }
    return figures, diagnostics


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
        "during_submissions_ms": _scaled(stats.summarize(storm)),
        "after_submissions_ms": _scaled(stats.summarize(steady)),
        "by_emission_time": [
            {
                "from_s": key * bucket,
                "n": len(values),
                "p50_ms": _ms(stats.median(values)),
                "p99_ms": _ms(stats.percentile(values, 99)),
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
        interval = _server_interval(visit)
        if interval is None or visit.index not in floor_waited:
            continue
        lag = (interval[0] - stack_rush.start) - floor_waited[visit.index]
        waves.setdefault(place // slots, []).append(lag)
    return [
        {"wave": wave + 1, "n": len(lags), "p50_s": stats.median(lags), "max_s": max(lags)}
        for wave, lags in sorted(waves.items())
    ]


def _emission_split(
    stack_visits: Sequence[StackVisit], floor_visits: Sequence[FloorVisit]
) -> dict[str, float | None]:
    """Split time to first delta at the backend's emission stamp of that delta's first token:
    before it is the path to the backend (queue, dispatch, prefill), after it is delivery."""

    def before(start: float | None, stamp: float | None) -> float | None:
        return None if start is None or stamp is None else stamp - start

    def after(stamp: float | None, received: float | None) -> float | None:
        return None if stamp is None or received is None else received - stamp

    return {
        "stack_submit_to_emission_ms": _ms(
            stats.median(_values(before(v.submit_at, v.first_stamp) for v in stack_visits))
        ),
        "floor_start_to_emission_ms": _ms(
            stats.median(_values(before(v.start_at, v.first_stamp) for v in floor_visits))
        ),
        "stack_first_delta_delivery_ms": _ms(
            stats.median(_values(after(v.first_stamp, v.first_delta_at) for v in stack_visits))
        ),
        "floor_first_delta_delivery_ms": _ms(
            stats.median(_values(after(v.first_stamp, v.first_delta_at) for v in floor_visits))
        ),
    }


def _ratio_within(value: float | None, floor: float | None, limit: float) -> bool | None:
    found = stats.ratio(value, floor)
    return None if found is None else found <= limit


def _scaled(summary: dict[str, float | int | None]) -> dict[str, float | int | None]:
    return {
        key: value if key == "n" or value is None else value * 1000
        for key, value in summary.items()
    }


def _count(items: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def _kib_to_mib(kib: float | None) -> float | None:
    return None if kib is None else kib / 1024


def _mib(memory: dict[str, Any], name: str) -> float | None:
    return _kib_to_mib((memory.get("peak_hwm_kib") or {}).get(name))


def _fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if unit in ("", "count"):
        return f"{value:.0f}"
    if unit == "s":
        return f"{value:.2f} s"
    if unit in ("ms", "%", "MiB", "KiB"):
        return f"{value:.1f} {unit}" if unit != "%" else f"{value:.1f}%"
    return f"{value:.3g} {unit}"


def _fmt_comparison(figure: Figure) -> str:
    value = figure.comparison
    if value is None:
        return ""
    if figure.compare == "ratio":
        return f"× {value:.3f}"
    sign = "+" if value >= 0 else "−"
    return f"{sign}{abs(value):.1f} {figure.unit}".rstrip()


def table(figures: Sequence[Figure]) -> str:
    headers = ("figure", "stack", "floor", "vs floor", "target", "result")
    rows = [
        (
            f.label,
            _fmt(f.stack, f.unit),
            _fmt(f.floor, f.unit) if f.floor is not None else "",
            _fmt_comparison(f),
            f.target,
            {True: "PASS", False: "FAIL", None: ""}[f.passed],
        )
        for f in figures
    ]
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(headers, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [
        " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
    ]
    return "\n".join(lines)


def verdict(figures: Sequence[Figure]) -> str:
    judged = [f for f in figures if f.passed is not None]
    failed = [f.label for f in judged if not f.passed]
    passed = len(judged) - len(failed)
    text = f"targets met: {passed}/{len(judged)}"
    if failed:
        text += " — missed: " + "; ".join(failed)
    return text
