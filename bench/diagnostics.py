"""The diagnostics printed under the figures: where the stack's time went."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def print_diagnostics(diagnostics: dict[str, Any], say: Callable[[str], None]) -> None:
    rush, idle = diagnostics["rush"], diagnostics["idle"]

    def fmt(summary: dict[str, Any], unit: str) -> str:
        parts = []
        for key in ("p50", "p90", "p99", "max"):
            value = summary.get(key)
            parts.append(f"{key} {'—' if value is None else f'{value:.1f}'}")
        return ", ".join(parts) + f" {unit} (n={summary.get('n')})"

    say("diagnostics")
    say(f"  stack delay, all deltas:            {fmt(rush['stack_delay_ms'], 'ms')}")
    say(f"  stack delay, emitted after WS open: {fmt(rush['stack_delay_live_only_ms'], 'ms')}")
    say(f"  floor delay:                        {fmt(rush['floor_delay_ms'], 'ms')}")
    say(f"  stack slot hand-off gap:            {fmt(rush['stack_handoff_gap_ms'], 'ms')}")
    say(f"  floor slot hand-off gap:            {fmt(rush['floor_handoff_gap_ms'], 'ms')}")
    say(f"  GET / (the page, all at once):      {fmt(rush['stack_page_seconds'], 's')}")
    say(f"  POST /api/v1/conversations:         {fmt(rush['stack_post_seconds'], 's')}")
    say(
        f"  the same, refused at once (floor):  {fmt(rush['refused_post_seconds'], 's')} "
        f"({rush['refused_posts_answered']} refused as broken JSON)"
    )
    say(
        f"  slot utilisation: stack {rush['stack_slot_utilisation']:.3f}, "
        f"floor {rush['floor_slot_utilisation']:.3f}"
    )
    signed = rush["eta_signed_error_median"]
    say(
        f"  ETA judged on {rush['eta_judged_visitors']} visitors; median signed error "
        f"{'—' if signed is None else f'{signed * 100:+.1f}%'} (+ = over-estimate)"
    )
    after_told = rush["eta_error_after_told"]["p50"]
    say(
        "  ETA error counted from the POST's answer (not the click), median: "
        f"{'—' if after_told is None else f'{after_told * 100:.1f}%'}"
    )
    say(f"  finals: {rush['final_types']}; reconnects {rush['reconnects']}")
    phases = rush["stack_delay_phases"]
    say(
        f"  stack delay while POSTs were still being answered (first "
        f"{phases['submissions_answered_after_s']:.1f} s): "
        f"{fmt(phases['during_submissions_ms'], 'ms')}"
    )
    say(f"  stack delay after that:             {fmt(phases['after_submissions_ms'], 'ms')}")
    lags = ", ".join(
        f"{wave['wave']}: {_num(None if wave['p50_s'] is None else wave['p50_s'] * 1000)}"
        for wave in rush["start_lag_vs_floor_by_wave"]
    )
    say(f"  generation start later than on the floor, by wave of the line (p50 ms): {lags}")
    for name, used in diagnostics["cpu_cores_used"].items():
        cores = ", ".join(
            f"{key} {value:.2f}"
            for key, value in used.items()
            if key not in ("cpus", "machine_busy", "others")
        )
        say(
            f"  CPU cores used, {name}: {cores}; other processes {used.get('others', 0):.2f}; "
            f"machine {used.get('machine_busy', 0) * 100:.0f}% busy of "
            f"{used.get('cpus', 0):.0f} CPUs"
        )
    traced = diagnostics.get("redis_monitor")
    if traced:
        lock = traced["dispatch_lock"]
        say(
            "  redis monitor: emission → PUBLISH "
            f"{fmt(traced['emission_to_publish_ms'], 'ms')}; dispatch lock "
            f"{lock['acquisitions']} acquisitions, {lock['failed_attempts']} failed polls, "
            f"hold {fmt(lock['hold_ms'], 'ms')}"
        )
        steps = ", ".join(
            f"{name} {_num(value)}" for name, value in traced.get("idle_steps_ms", {}).items()
        )
        say(f"  idle visitor, ms after submit (median): {steps}")
    breakdown = ", ".join(
        f"{key.removesuffix('_ms')} {'—' if value is None else f'{value:.1f}'}"
        for key, value in idle["stack_breakdown"].items()
    )
    say(f"  idle stack breakdown (median ms): {breakdown}")
    say(
        "  idle, submit → backend emits the first delta's token: "
        f"stack {_num(idle['stack_submit_to_emission_ms'])} ms, "
        f"floor {_num(idle['floor_start_to_emission_ms'])} ms; "
        f"emission → receipt of that delta: stack {_num(idle['stack_first_delta_delivery_ms'])}"
        f" ms, floor {_num(idle['floor_first_delta_delivery_ms'])} ms"
    )


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"
