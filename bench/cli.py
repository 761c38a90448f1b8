"""The benchmark's command line and the order of its runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bench import floor, procs, provenance, report, stats, viral, waiting
from bench.config import PROFILES, Config
from bench.console import say
from bench.diagnostics import print_diagnostics
from bench.footprint import memory_figures
from bench.monitor import RedisMonitor
from bench.monitor import analyze as analyze_trace
from bench.monitor import timelines as trace_timelines
from bench.processes import ScratchDatabase, Simulator, make_stack, process_roots
from bench.procs import QUIET_CORES, wait_for_quiet
from bench.visitors import (
    StackRun,
    StackVisit,
    fetch_samples,
    idle_visits,
    refused_at_once,
    run_visitors,
)
from deploy.asgi_server import ASGI_SERVERS, UVICORN_WS_IMPLEMENTATIONS
from devtools.stack import ROOT, Stack
from inference.samples import get_sample


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Rush the playground over HTTP + WebSockets and compare it with an ideal "
        "floor (the same visitors straight against the same simulator).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="default",
        help="which rush (see bench/config.py): default (96 visitors, minute-long answers), "
        "quick, launch (1,000 visitors at once, 20-token answers) or viral (1,000 viewers of "
        "one live share link)",
    )
    parser.add_argument(
        "--visitors",
        type=int,
        default=None,
        help="visitors in the rush, or strangers on the share link (the profile's)",
    )
    parser.add_argument(
        "--slots", type=int, default=None, help="GENERATION_CONCURRENCY (the profile's)"
    )
    parser.add_argument(
        "--tokens-per-second", type=float, default=None, help="decode speed (the profile's)"
    )
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
        help="web processes sharing the listening socket (WEB_PROCESSES; as `make run`: "
        "1 on SQLite, 2 on PostgreSQL)",
    )
    parser.add_argument(
        "--asgi-server",
        choices=ASGI_SERVERS,
        default="uvicorn",
        help="the web processes' server (ASGI_SERVER), run as `make run` and the image run it",
    )
    parser.add_argument(
        "--uvicorn-ws",
        choices=UVICORN_WS_IMPLEMENTATIONS,
        default=UVICORN_WS_IMPLEMENTATIONS[0],
        help="uvicorn's WebSocket implementation (UVICORN_WS; default: the one shipped)",
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
        "--quick", action="store_true", help="the quick profile: 24 visitors on 4 slots"
    )
    args = parser.parse_args(argv)
    profile = PROFILES["quick" if args.quick else args.profile]
    visitors = args.visitors or profile.visitors
    slots = args.slots or profile.slots
    tokens_per_second = args.tokens_per_second or profile.tokens_per_second
    if (
        visitors < 1
        or slots < 1
        or tokens_per_second <= 0
        or args.idle_repeats < 1
        or args.worker_processes < 1
        or (args.web_processes is not None and args.web_processes < 1)
    ):
        parser.error(
            "visitors, slots, idle repeats, processes and tokens per second must be positive"
        )
    return Config(
        profile=profile,
        visitors=visitors,
        slots=slots,
        tokens_per_second=tokens_per_second,
        out=args.out,
        idle_repeats=args.idle_repeats,
        prime=args.prime,
        seed=args.seed,
        keep_data=args.keep_data,
        redis_monitor=args.redis_monitor,
        worker_processes=args.worker_processes,
        web_processes=args.web_processes,
        asgi_server=args.asgi_server,
        uvicorn_ws=args.uvicorn_ws,
        database_url=args.database_url,
    )


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
    source = provenance.source_state()
    try:
        sim_url = simulator.start()
        say(f"simulator at {sim_url} (log {simulator.log_path})")
        database_url = scratch.create() if scratch else None
        if scratch:
            say(f"PostgreSQL scratch database {scratch.name}")
        stack = make_stack(
            sim_url,
            config.slots,
            work_dir,
            log_dir,
            database_url,
            config.asgi_server,
            config.uvicorn_ws,
        )
        # The stack sizes each process's threads for its share of the slots, as `make run` does.
        stack.env["WORKER_PROCESSES"] = str(config.worker_processes)
        stack.env["MAX_NEW_TOKENS"] = str(config.max_new_tokens)
        if config.web_processes is not None:
            stack.env["WEB_PROCESSES"] = str(config.web_processes)
        say(
            f"starting the stack (embedded redis, migrations, Celery workers, {stack.asgi_server})…"
        )
        stack.start()
        stack.wait_for_worker()
        say(f"stack at {stack.base_url}; logs in {log_dir}")
        if config.profile.share_link:
            document = asyncio.run(viral.measure_viral(config, simulator, stack, source))
        elif config.profile.hold_line:
            document = asyncio.run(waiting.measure_waiting(config, simulator, stack, source))
        else:
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

    cpu_roots = process_roots(stack, simulator)
    roots = {name: cpu_roots[name] for name in ("web", "worker")}
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
        # Since the simulator started: the priming wave and the rush, never more than the slots.
        peak_in_flight = simulator.stats().get("peak_active")
        memory = memory_figures(roots, before, sampler, rush, stack)

        say(
            f"idle: {config.idle_repeats} × one visitor ({idle_slug}) on the stack, each "
            "followed by one straight from the simulator"
        )
        await asyncio.to_thread(simulator.wait_idle)
        quiet["idle"] = await wait_for_quiet(cpu_roots, "the idle visitors")
        stack_idle, floor_idle = await idle_pairs(
            base,
            simulator.url,
            idle_slug,
            prompts[idle_slug],
            config.idle_repeats,
            timeout,
            config.max_new_tokens,
        )
    finally:
        if tap is not None:
            tap.stop()
    traced = None
    if tap is not None:
        traced = analyze_trace(tap.path, rush.start, rush.end or time.time())
        traced["idle_steps_ms"] = idle_steps(tap.path, stack_idle)

    # The POSTs' floor: as many new visitors, each refused at the API's first step.
    quiet["refused_posts"] = await wait_for_quiet(cpu_roots, "the refused POSTs")
    say(f"refused POSTs: {config.visitors} new visitors post broken JSON at once")
    cpu = procs.CpuMeter(cpu_roots).start()
    refused = await refused_at_once(base, config.visitors)
    refused_cpu = cpu.stop()
    say(f"  {len(refused)} refused as broken JSON")

    # The floor runs second, on the same simulator, once it has nothing in flight.
    await asyncio.to_thread(simulator.wait_idle, 60, 2.0)
    quiet["floor_rush"] = await wait_for_quiet(cpu_roots, "the floor rush")
    line = _line_order(rush)
    say(f"floor rush: the same {len(line)} visitors through an ideal queue of {config.slots}")
    floor_roots = {name: cpu_roots[name] for name in ("bench", "simulator")}
    cpu = procs.CpuMeter(floor_roots).start()
    floor_rush = await floor.rush(
        simulator.url,
        [(visit.index, visit.slug, prompts[visit.slug]) for visit in line],
        config.slots,
        timeout,
        config.max_new_tokens,
    )
    floor_cpu = cpu.stop()
    say(f"  done in {floor_rush.wall or 0:.1f} s")

    figures, diagnostics = report.build(
        targets=config.profile.targets,
        peak_in_flight=peak_in_flight,
        slots=config.slots,
        stack_rush=rush,
        floor_rush=floor_rush,
        stack_idle=stack_idle,
        floor_idle=floor_idle,
        refused_posts=refused,
        memory=memory,
    )
    diagnostics["cpu_cores_used"] = {
        "stack_rush": stack_cpu,
        "refused_posts": refused_cpu,
        "floor_rush": floor_cpu,
    }
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
    print_diagnostics(diagnostics, say)
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": provenance.environment(config.sim_args, stack, source),
        "config": provenance.run_config(
            config,
            stack,
            visitors=config.visitors,
            idle_repeats=config.idle_repeats,
            prime=config.prime,
            max_new_tokens=config.max_new_tokens,
            first_token_seconds=config.profile.first_token_seconds,
            visitor_timeout_s=timeout,
            sample_mix=stats.count(mix),
            idle_sample=idle_slug,
        ),
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
    base: str,
    sim_url: str,
    slug: str,
    prompt: str,
    repeats: int,
    timeout: float,
    max_new_tokens: int,
) -> tuple[list[StackVisit], list[floor.FloorVisit]]:
    """One visitor on the idle stack, then one straight from the simulator, `repeats` times.

    Interleaved, so that on a shared machine both sides meet the same background load.
    """
    await floor.idle(sim_url, slug, prompt, 1, max_new_tokens)  # warm-up, discarded
    stack_idle: list[StackVisit] = []
    floor_idle: list[floor.FloorVisit] = []
    for index in range(repeats):
        stack_idle += await idle_visits(base, slug, 1, timeout)
        floor_idle += await floor.idle(sim_url, slug, prompt, 1, max_new_tokens)
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


def _answer_length(slug: str) -> int:
    sample = get_sample(slug)
    return len(sample.scripted_answer) if sample is not None else 10**9


def _line_order(rush: StackRun) -> list[StackVisit]:
    """The stack's actual line (creation order), so the floor serves the same schedule."""
    return sorted(
        rush.visits,
        key=lambda v: (v.created_at is None, v.created_at or 0.0, v.index),
    )
