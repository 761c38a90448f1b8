"""Turning the runs into figures with targets, a readable table and a JSON document."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench import stats, timing
from bench.config import Targets
from bench.floor import FloorRun, FloorVisit
from bench.visitors import StackRun, StackVisit


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


def build(
    *,
    targets: Targets,
    peak_in_flight: int | None,
    slots: int,
    stack_rush: StackRun,
    floor_rush: FloorRun,
    stack_idle: Sequence[StackVisit],
    floor_idle: Sequence[FloorVisit],
    refused_posts: Sequence[float],
    memory: dict[str, Any],
) -> tuple[list[Figure], dict[str, Any]]:
    """The figures of the issue (with targets) and the diagnostics behind them.

    The POST figures' floor is `refused_posts`: as many POSTs at once, each refused at the
    API's first step, through the same web server: what the server alone costs them."""
    visits = stack_rush.visits
    stack_ttfd = stats.present([v.ttfd for v in visits])
    floor_ttfd = stats.present([v.ttfd for v in floor_rush.visits])
    stack_delays = [d for v in visits for d in v.delays]
    live_delays = [d for v in visits for d in v.live_delays]
    floor_delays = [d for v in floor_rush.visits for d in v.delays]
    eta_errors = stats.present([stats.eta_error(v.predicted_wait, v.actual_wait) for v in visits])
    overloaded = sum(1 for v in visits if v.final_code == "overloaded" or v.refusal == "overloaded")
    lost = sum(1 for v in visits if not v.ok)
    rose = sum(1 for v in visits if stats.position_rose(v.positions))
    floor_failed = sum(1 for v in floor_rush.visits if v.error or v.done_at is None)
    floor_overloaded = sum(1 for v in floor_rush.visits if (v.error or "").startswith("overloaded"))

    wall = stack_rush.wall if stack_rush.complete else None
    wall_ratio = stats.ratio(wall, floor_rush.wall)
    ttfd_stack, ttfd_floor = stats.median(stack_ttfd), stats.median(floor_ttfd)
    idle_stack = stats.ms(stats.median(stats.present([v.ttfd for v in stack_idle])))
    idle_floor = stats.ms(stats.median(stats.present([v.ttfd for v in floor_idle])))
    delay_p50 = stats.ms(stats.median(stack_delays))
    delay_p99 = stats.ms(stats.percentile(stack_delays, 99))
    eta_median = stats.median(eta_errors)
    posts = stats.present([v.post_seconds for v in visits])
    post_p99 = stats.percentile(posts, 99)
    refused_p99 = stats.percentile(refused_posts, 99)

    figures = [
        Figure(
            "rush_wall_s",
            "rush wall time (all answers done)",
            "s",
            wall,
            floor_rush.wall,
            "ratio",
            f"≤ {targets.wall_ratio:.2f} × floor",
            None if wall_ratio is None else wall_ratio <= targets.wall_ratio,
        ),
        Figure(
            "rush_ttfd_p50_s",
            "time to first delta p50, rush",
            "s",
            ttfd_stack,
            ttfd_floor,
            "ratio",
            f"≤ {targets.ttfd_ratio:.2f} × floor",
            _ratio_within(ttfd_stack, ttfd_floor, targets.ttfd_ratio),
        ),
        Figure(
            "idle_ttfd_ms",
            "time to first delta, idle (median)",
            "ms",
            idle_stack,
            idle_floor,
            "diff",
            f"≤ floor + {targets.idle_extra_ms:.0f} ms",
            None
            if idle_stack is None or idle_floor is None
            else idle_stack <= idle_floor + targets.idle_extra_ms,
        ),
        Figure(
            "rush_delay_p50_ms",
            "emission → receipt delay p50, rush",
            "ms",
            delay_p50,
            stats.ms(stats.median(floor_delays)),
            "diff",
            "" if targets.delay_p50_ms is None else f"≤ {targets.delay_p50_ms:.0f} ms",
            None if targets.delay_p50_ms is None else stats.within(delay_p50, targets.delay_p50_ms),
        ),
        Figure(
            "rush_delay_p99_ms",
            "emission → receipt delay p99, rush",
            "ms",
            delay_p99,
            stats.ms(stats.percentile(floor_delays, 99)),
            "diff",
            f"≤ {targets.delay_p99_ms:.0f} ms",
            stats.within(delay_p99, targets.delay_p99_ms),
        ),
        Figure(
            "post_p50_s",
            "POST answered p50, rush",
            "s",
            stats.median(posts),
            stats.median(refused_posts),
            "ratio",
        ),
        Figure(
            "post_p99_s",
            "POST answered p99, rush",
            "s",
            post_p99,
            refused_p99,
            "ratio",
            "" if targets.post_p99_s is None else f"≤ {targets.post_p99_s:.1f} s",
            None if targets.post_p99_s is None else stats.within(post_p99, targets.post_p99_s),
        ),
        Figure(
            "post_max_s",
            "POST answered max, rush",
            "s",
            max(posts) if posts else None,
            max(refused_posts) if refused_posts else None,
            "ratio",
        ),
        Figure(
            "backend_peak_in_flight",
            "streams in flight at the backend, peak",
            "",
            peak_in_flight,
            None,
            "",
            f"≤ {slots}",
            None if peak_in_flight is None else peak_in_flight <= slots,
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
            f"≤ {targets.eta_error * 100:.0f}%",
            stats.within(eta_median, targets.eta_error),
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

    stack_intervals = stats.present(timing.server_interval(v) for v in visits)
    floor_intervals = stats.present(timing.floor_interval(v) for v in floor_rush.visits)
    signed_eta = stats.present(
        stats.signed_eta_error(v.predicted_wait, v.actual_wait) for v in visits
    )
    eta_errors_after_told = stats.present(
        stats.eta_error(v.predicted_wait, v.wait_after_told) for v in visits
    )
    diagnostics = {
        "rush": {
            "stack_ttfd_s": stats.summarize(stack_ttfd),
            "floor_ttfd_s": stats.summarize(floor_ttfd),
            "stack_delay_ms": stats.in_ms(stats.summarize(stack_delays)),
            "stack_delay_live_only_ms": stats.in_ms(stats.summarize(live_delays)),
            "stack_delay_phases": timing.delay_phases(stack_rush),
            "start_lag_vs_floor_by_wave": timing.start_lag_by_wave(stack_rush, floor_rush, slots),
            "floor_delay_ms": stats.in_ms(stats.summarize(floor_delays)),
            "stack_post_seconds": stats.summarize(posts),
            "refused_post_seconds": stats.summarize(refused_posts),
            "refused_posts_answered": len(refused_posts),
            "stack_page_seconds": stats.summarize(stats.present([v.page_seconds for v in visits])),
            "stack_handoff_gap_ms": stats.in_ms(
                stats.summarize(timing.handoff_gaps(stack_intervals, slots))
            ),
            "floor_handoff_gap_ms": stats.in_ms(
                stats.summarize(timing.handoff_gaps(floor_intervals, slots))
            ),
            "stack_slot_utilisation": timing.utilisation(stack_intervals, slots, wall),
            "floor_slot_utilisation": timing.utilisation(floor_intervals, slots, floor_rush.wall),
            "stack_service_s": stats.summarize([b - a for a, b in stack_intervals]),
            "floor_service_s": stats.summarize([b - a for a, b in floor_intervals]),
            "eta_error": stats.summarize(eta_errors),
            "eta_signed_error_median": stats.median(signed_eta),
            "eta_judged_visitors": len(eta_errors),
            "eta_error_after_told": stats.summarize(eta_errors_after_told),
            "reconnects": sum(v.reconnects for v in visits),
            "seq_errors": sum(v.seq_errors for v in visits),
            "final_types": stats.count([v.final_type or "none" for v in visits]),
            "problems": [v.summary() for v in visits if not v.ok],
        },
        "idle": {
            "stack_ttfd_ms": [stats.ms(v.ttfd) for v in stack_idle],
            "floor_ttfd_ms": [stats.ms(v.ttfd) for v in floor_idle],
            "stack_breakdown": timing.idle_breakdown(stack_idle),
            **timing.emission_split(stack_idle, floor_idle),
        },
    }
    return figures, diagnostics


def _ratio_within(value: float | None, floor: float | None, limit: float) -> bool | None:
    found = stats.ratio(value, floor)
    return None if found is None else found <= limit


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
