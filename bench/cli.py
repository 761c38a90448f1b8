"""The benchmark's command line and the order of its runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from bench import floor, procs, report, stats
from bench.monitor import RedisMonitor
from bench.monitor import analyze as analyze_trace
from bench.monitor import timelines as trace_timelines
from bench.processes import ScratchDatabase, Simulator, make_stack
from bench.visitors import StackRun, StackVisit, fetch_samples, idle_visits, run_visitors
from devtools.stack import ROOT, Stack
from inference.samples import get_sample

# Generous upper bounds, only used to tell a stuck visitor from a slow one.
LONGEST_ANSWER_TOKENS = 1000
BATCH_SLOWDOWN = 0.03  # the simulator's default, which the benchmark does not change


@dataclass(frozen=True)
class Config:
    visitors: int
    slots: int
    tokens_per_second: float
    out: Path
    idle_repeats: int
    prime: bool
    seed: int
    quick: bool
    keep_data: bool = False
    worker_processes: int = 2
    web_processes: int | None = None
    database_url: str | None = None
    redis_monitor: bool = False

    @property
    def sim_args(self) -> list[str]:
        return [
            "--port", "0",
            "--stamp-emission-times",
            "--tokens-per-second", f"{self.tokens_per_second:g}",
            "--max-concurrent-requests", "128",
            "--seed", str(self.seed),
        ]  # fmt: skip

    @property
    def visitor_timeout(self) -> float:
        step = (1 / self.tokens_per_second) * (1 + BATCH_SLOWDOWN * (self.slots - 1))
        waves = -(-self.visitors // self.slots)
        return 3 * waves * LONGEST_ANSWER_TOKENS * step + 60


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Rush the playground over HTTP + WebSockets and compare it with an ideal "
        "floor (the same visitors straight against the same simulator).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--visitors", type=int, default=None, help="visitors in the rush (96)")
    parser.add_argument("--slots", type=int, default=None, help="GENERATION_CONCURRENCY (16)")
    parser.add_argument("--tokens-per-second", type=float, default=40.0)
    parser.add_argument("--out", type=Path, default=Path("bench-results/bench.json"))
    parser.add_argument("--idle-repeats", type=int, default=7)
    parser.add_argument(
        "--prime",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve one visitor per sample (at least one wave) before the rush, so the "
        "processes are warm and the ETA model has a service-time history",
    )
    parser.add_argument("--seed", type=int, default=1, help="the simulator's seed")
    parser.add_argument(
        "--redis-monitor",
        action="store_true",
        help="diagnosis: record a Redis MONITOR trace of the stack rush (slows Redis down)",
    )
    parser.add_argument(
        "--worker-processes",
        type=int,
        default=2,
        help="Celery worker processes sharing the slots (WORKER_PROCESSES; `make run` starts 2)",
    )
    parser.add_argument(
        "--web-processes",
        type=int,
        default=None,
        help="uvicorn processes sharing the listening socket (WEB_PROCESSES; as `make run`: "
        "1 on SQLite, 2 on PostgreSQL)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server (postgres://user@host:port/db) to run the stack on, as in "
        "production: the bench creates a scratch database there and drops it afterwards "
        "(default: SQLite in a temporary directory)",
    )
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="keep the stack's database and VAR_DIR afterwards (for inspection)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a small smoke run: 24 visitors on 4 slots"
    )
    args = parser.parse_args(argv)
    visitors = args.visitors or (24 if args.quick else 96)
    slots = args.slots or (4 if args.quick else 16)
    if (
        visitors < 1
        or slots < 1
        or args.tokens_per_second <= 0
        or args.idle_repeats < 1
        or args.worker_processes < 1
        or (args.web_processes is not None and args.web_processes < 1)
    ):
        parser.error(
            "visitors, slots, idle repeats, processes and tokens per second must be positive"
        )
    return Config(
        visitors=visitors,
        slots=slots,
        tokens_per_second=args.tokens_per_second,
        out=args.out,
        idle_repeats=args.idle_repeats,
        prime=args.prime,
        seed=args.seed,
        quick=args.quick,
        keep_data=args.keep_data,
        redis_monitor=args.redis_monitor,
        worker_processes=args.worker_processes,
        web_processes=args.web_processes,
        database_url=args.database_url,
    )


def say(text: str) -> None:
    print(f"[bench] {text}", flush=True)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    if not (ROOT / "manage.py").exists():
        print("run the benchmark from the repository (python -m bench)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    results_dir = config.out.parent
    log_dir = results_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="playground-bench-"))
    simulator = Simulator(config.sim_args, log_dir / "simulator.log")
    stack: Stack | None = None
    scratch = ScratchDatabase(config.database_url) if config.database_url else None
    source = source_state()
    try:
        sim_url = simulator.start()
        say(f"simulator at {sim_url} (log {simulator.log_path})")
        database_url = scratch.create() if scratch else None
        if scratch:
            say(f"PostgreSQL scratch database {scratch.name}")
        stack = make_stack(sim_url, config.slots, work_dir, log_dir, database_url)
        # The stack sizes each process's threads for its share of the slots, as `make run` does.
        stack.env["WORKER_PROCESSES"] = str(config.worker_processes)
        if config.web_processes is not None:
            stack.env["WEB_PROCESSES"] = str(config.web_processes)
        say("starting the stack (embedded redis, migrations, Celery workers, uvicorn)…")
        stack.start()
        stack.wait_for_worker()
        say(f"stack at {stack.base_url}; logs in {log_dir}")
        document = asyncio.run(measure(config, simulator, stack, source))
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        return 130
    finally:
        # A second Ctrl-C must not leave half the processes running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if stack is not None:
            stack.stop()
        simulator.stop()
        if scratch is not None:
            scratch.drop()
        if config.keep_data:
            say(f"kept the stack's data in {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    say(f"wrote {config.out}")
    # A measurement, not a test: missed targets are reported, not turned into an exit code.
    return 0


async def measure(
    config: Config, simulator: Simulator, stack: Stack, source: dict[str, Any]
) -> dict[str, Any]:
    base = stack.base_url
    samples = await fetch_samples(base)
    if not samples:
        raise RuntimeError("the stack has no sample prompts")
    prompts = {sample["slug"]: sample["prompt"] for sample in samples}
    slugs = list(prompts)
    # A mix of samples so that answers have different lengths, as in a real line.
    mix = [slugs[i % len(slugs)] for i in range(config.visitors)]
    idle_slug = min(slugs, key=_answer_length)
    timeout = config.visitor_timeout

    if config.prime:
        # At least one of each sample, so that the service-time history the ETA model starts
        # from has the rush's mix of answer lengths.
        wave = [slugs[i % len(slugs)] for i in range(max(config.slots, len(slugs)))]
        say(f"priming: {len(wave)} visitors (warm the processes and the ETA model's history)")
        primed = await run_visitors(base, wave, timeout)
        say(f"  primed in {primed.wall or 0:.1f} s; {sum(v.ok for v in primed.visits)} answered")
    else:
        say("warming up with one visitor")
        await run_visitors(base, [idle_slug], timeout)
    await asyncio.to_thread(simulator.wait_idle)

    def pids(kind: str) -> list[int]:
        return [p.pid for name, p in stack.processes.items() if name.startswith(kind)]

    roots = {"web": pids("web"), "worker": pids("worker")}
    cpu_roots = {"bench": [os.getpid()], **roots, "simulator": [_pid(simulator.process)]}
    if stack.redis is not None:
        cpu_roots["redis"] = [_pid(stack.redis.process)]
    quiet: dict[str, float] = {}
    tap = None
    if config.redis_monitor:
        tap = RedisMonitor(stack.env["REDIS_URL"], config.out.parent / "redis-monitor.log")
        tap.start()
    try:
        quiet["stack_rush"] = await wait_for_quiet(cpu_roots, "the stack rush")
        say(f"stack rush: {config.visitors} visitors at once, {config.slots} slots")
        sampler = procs.MemorySampler(roots)
        before = sampler.snapshot()
        cpu = procs.CpuMeter(cpu_roots).start()
        sampler.start()
        try:
            rush = await run_visitors(base, mix, timeout)
        finally:
            sampler.stop()
            stack_cpu = cpu.stop()
        answered = sum(v.ok for v in rush.visits)
        say(f"  done in {rush.wall or 0:.1f} s; {answered} answered in full")
        memory = memory_figures(roots, before, sampler, rush, stack)

        say(
            f"idle: {config.idle_repeats} × one visitor ({idle_slug}) on the stack, each "
            "followed by one straight from the simulator"
        )
        await asyncio.to_thread(simulator.wait_idle)
        quiet["idle"] = await wait_for_quiet(cpu_roots, "the idle visitors")
        stack_idle, floor_idle = await idle_pairs(
            base, simulator.url, idle_slug, prompts[idle_slug], config.idle_repeats, timeout
        )
    finally:
        if tap is not None:
            tap.stop()
    traced = None
    if tap is not None:
        traced = analyze_trace(tap.path, rush.start, rush.end or time.time())
        traced["idle_steps_ms"] = idle_steps(tap.path, stack_idle)

    # The floor runs second, on the same simulator, once it has nothing in flight.
    await asyncio.to_thread(simulator.wait_idle, 60, 2.0)
    quiet["floor_rush"] = await wait_for_quiet(cpu_roots, "the floor rush")
    line = _line_order(rush)
    say(f"floor rush: the same {len(line)} visitors through an ideal queue of {config.slots}")
    floor_roots = {"bench": [os.getpid()], "simulator": [_pid(simulator.process)]}
    cpu = procs.CpuMeter(floor_roots).start()
    floor_rush = await floor.rush(
        simulator.url,
        [(visit.index, visit.slug, prompts[visit.slug]) for visit in line],
        config.slots,
        timeout,
    )
    floor_cpu = cpu.stop()
    say(f"  done in {floor_rush.wall or 0:.1f} s")

    figures, diagnostics = report.build(
        slots=config.slots,
        stack_rush=rush,
        floor_rush=floor_rush,
        stack_idle=stack_idle,
        floor_idle=floor_idle,
        memory=memory,
    )
    diagnostics["cpu_cores_used"] = {"stack_rush": stack_cpu, "floor_rush": floor_cpu}
    diagnostics["foreign_load_before_cores"] = quiet
    if traced is not None:
        diagnostics["redis_monitor"] = traced
    warnings = [
        f"other processes used {used['others']:.2f} cores during the {name.replace('_', ' ')}: "
        "its figures are not representative of this machine"
        for name, used in diagnostics["cpu_cores_used"].items()
        if used.get("others", 0.0) > QUIET_CORES
    ]
    print()
    print(report.table(figures))
    print()
    say(report.verdict(figures))
    for warning in warnings:
        say(f"warning: {warning}")
    _print_diagnostics(diagnostics)
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment(config, stack, source),
        "config": {
            "visitors": config.visitors,
            "slots": config.slots,
            "tokens_per_second": config.tokens_per_second,
            "idle_repeats": config.idle_repeats,
            "worker_processes": config.worker_processes,
            "web_processes": stack.web_processes(),
            "database": "postgresql" if config.database_url else "sqlite",
            "prime": config.prime,
            "quick": config.quick,
            "visitor_timeout_s": timeout,
            "sample_mix": _count(mix),
            "idle_sample": idle_slug,
        },
        "figures": [figure.as_dict() for figure in figures],
        "verdict": report.verdict(figures),
        "warnings": warnings,
        "memory": memory,
        "diagnostics": diagnostics,
        "stack_rush": {
            "wall_s": rush.wall,
            "complete": rush.complete,
            "visitors": [v.summary() for v in rush.visits],
        },
        "floor_rush": {
            "wall_s": floor_rush.wall,
            "visitors": [v.summary() for v in floor_rush.visits],
        },
        "stack_idle": [v.summary() for v in stack_idle],
        "floor_idle": [v.summary() for v in floor_idle],
    }


async def idle_pairs(
    base: str, sim_url: str, slug: str, prompt: str, repeats: int, timeout: float
) -> tuple[list[StackVisit], list[floor.FloorVisit]]:
    """One visitor on the idle stack, then one straight from the simulator, `repeats` times.

    Interleaved, so that on a shared machine both sides meet the same background load.
    """
    await floor.idle(sim_url, slug, prompt, 1)  # warm-up, discarded
    stack_idle: list[StackVisit] = []
    floor_idle: list[floor.FloorVisit] = []
    for index in range(repeats):
        stack_idle += await idle_visits(base, slug, 1, timeout)
        floor_idle += await floor.idle(sim_url, slug, prompt, 1)
        stack_idle[-1].index = floor_idle[-1].index = index
    return stack_idle, floor_idle


def idle_steps(path: Path, visits: list[StackVisit]) -> dict[str, float | None]:
    """Median milliseconds from submit to each step of an idle visitor's start."""
    ids = [v.message_id for v in visits if v.message_id]
    found = trace_timelines(path, ids)
    offsets: dict[str, list[float]] = {}
    for visit in visits:
        if not visit.message_id or visit.submit_at is None:
            continue
        steps = dict(found.get(visit.message_id, {}))
        server = visit.server_stats or {}
        if visit.created_at is not None:
            steps["row_created"] = visit.created_at
            if server.get("queue_seconds") is not None:
                steps["worker_marked_running"] = visit.created_at + server["queue_seconds"]
        if visit.first_delta_at is not None:
            steps["client_first_delta"] = visit.first_delta_at
        for name, instant in steps.items():
            offsets.setdefault(name, []).append((instant - visit.submit_at) * 1000)
    medians = {name: stats.median(values) for name, values in offsets.items()}
    return dict(sorted(medians.items(), key=lambda item: item[1] or 0.0))


QUIET_CORES = 0.2
QUIET_PATIENCE = 180.0


async def wait_for_quiet(roots: dict[str, list[int]], what: str) -> float:
    """Wait (a while) until nothing outside the benchmark uses the CPU; return that load.

    The machine may be shared with other work. A run under foreign load is still reported,
    with the load it ran under, so its ratios can be judged.
    """
    deadline = time.monotonic() + QUIET_PATIENCE
    while True:
        load = await asyncio.to_thread(procs.foreign_load, roots, 2.0)
        if load <= QUIET_CORES:
            return load
        if time.monotonic() >= deadline:
            say(f"  warning: other processes use {load:.2f} cores; measuring {what} anyway")
            return load
        say(f"  other processes use {load:.2f} cores; waiting for a quiet machine ({what})")
        await asyncio.sleep(8)


def _pid(process: subprocess.Popen[bytes] | None) -> int:
    return process.pid if process is not None else -1


def _answer_length(slug: str) -> int:
    sample = get_sample(slug)
    return len(sample.scripted_answer) if sample is not None else 10**9


def _line_order(rush: StackRun) -> list[StackVisit]:
    """The stack's actual line (creation order), so the floor serves the same schedule."""
    return sorted(
        rush.visits,
        key=lambda v: (v.created_at is None, v.created_at or 0.0, v.index),
    )


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


def source_state() -> dict[str, Any]:
    """The commit, and the files that differed from it, when the stack's processes start.

    Taken before the run, because others may commit or edit while it goes on: the processes
    run the files as they were when they started.
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split("\n")
    except OSError:
        commit, dirty = "", []
    return {
        "git_commit": commit,
        "git_modified_files": [line[3:] for line in dirty if line.strip()],
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def environment(config: Config, stack: Stack, source: dict[str, Any]) -> dict[str, Any]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        **source,
        "simulator_args": config.sim_args,
        "stack_env": {
            key: stack.env.get(key)
            for key in (
                "GENERATION_CONCURRENCY",
                "QUEUE_MAX_WAITING",
                "IP_MAX_ACTIVE",
                "IP_RATE_LIMIT",
                "STREAM_FLUSH_INTERVAL",
                "MAX_NEW_TOKENS",
            )
        },
        "worker_concurrency": stack.worker_concurrency or stack.default_worker_concurrency(),
    }


def _count(items: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def _print_diagnostics(diagnostics: dict[str, Any]) -> None:
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
    say(f"  POST /api/v1/conversations:         {fmt(rush['stack_post_seconds'], 's')}")
    say(
        f"  slot utilisation: stack {rush['stack_slot_utilisation']:.3f}, "
        f"floor {rush['floor_slot_utilisation']:.3f}"
    )
    signed = rush["eta_signed_error_median"]
    say(
        f"  ETA judged on {rush['eta_judged_visitors']} visitors; median signed error "
        f"{'—' if signed is None else f'{signed * 100:+.1f}%'} (+ = over-estimate)"
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
