"""The viral profile: one visitor asks, a thousand strangers open the share link at once.

Each stranger reads the share link's API, which holds what the shared page renders: the answer
so far and the seq it has reached. Like the page, the stranger then opens the answer's stream
with the link's token after that seq and reads to the end; nobody has a session of their own.
What each received is compared with what the owner's answer stored, and every token's delay
counts from the simulator's emission stamp, as in the rush. The floor is one reader straight
from the simulator: the delay the backend and one client add without the stack.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench import floor, procs, provenance, report, stats
from bench.config import Config, viral_delay_p99_ms
from bench.console import say
from bench.processes import Simulator, process_roots
from bench.report import Figure
from bench.visitors import StackVisit, StackVisitor, fetch_samples, run_visitors
from devtools.stack import Stack


@dataclass
class ViralRun:
    owner: StackVisit
    viewers: list[StackVisit]
    shared_at: float | None  # when the share link existed
    end: float | None


async def watch(viewer: StackVisitor, token: str, deadline: float) -> None:
    """A stranger: the shared conversation's API, then its last answer's stream."""
    visit = viewer.visit
    visit.submit_at = time.time()
    try:
        response = await viewer.http.get(f"/api/v1/shared/{token}")
        response.raise_for_status()
        messages = response.json()["messages"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        visit.problem = f"shared page failed: {type(exc).__name__}: {exc}"
        return
    visit.post_seconds = time.time() - visit.submit_at
    answer = messages[-1]
    visit.message_id = answer["id"]
    visit.stream_url = answer["stream_url"]
    # The page shows the answer so far and streams only what follows it (?after=&attempt=).
    visit.sections = stats.sections_from(answer.get("sections"))
    visit.last_seq = int(answer.get("seq") or 0)
    visit.attempt = answer.get("attempt")
    await viewer.stream(deadline)


async def run(base_url: str, slug: str, viewers: int, timeout: float) -> ViralRun:
    owner = StackVisitor(base_url, 0, slug)
    strangers = [StackVisitor(base_url, index, slug) for index in range(1, viewers + 1)]
    try:
        await owner.open()
        deadline = time.monotonic() + timeout
        await owner.submit()
        conversation = owner.visit.conversation_id
        if conversation is None:
            raise RuntimeError(f"the owner's question was refused: {owner.visit.problem}")
        shared = await owner.http.post(f"/api/v1/conversations/{conversation}/share")
        shared.raise_for_status()
        shared_at = time.time()
        token = shared.json()["share_url"].strip("/").rpartition("/")[2]
        await asyncio.gather(
            owner.stream(deadline), *(watch(viewer, token, deadline) for viewer in strangers)
        )
        finals = [v.visit.final_at for v in [owner, *strangers] if v.visit.final_at is not None]
        end = max(finals) if finals else None
        await owner.verify()
        stored = await owner.http.get(f"/api/v1/messages/{owner.visit.message_id}")
        sections = stored.json().get("sections")
        for viewer in strangers:
            viewer.visit.stored_status = owner.visit.stored_status
            viewer.visit.sections_ok = stats.sections_match(viewer.visit.sections, sections)
    finally:
        await asyncio.gather(
            *(visitor.aclose() for visitor in [owner, *strangers]), return_exceptions=True
        )
    return ViralRun(
        owner=owner.visit, viewers=[v.visit for v in strangers], shared_at=shared_at, end=end
    )


def figures(
    run: ViralRun,
    floor_visit: floor.FloorVisit,
    tokens_per_second: float,
    peak_in_flight: int | None,
) -> list[Figure]:
    viewers = run.viewers
    live = [delay for v in viewers for delay in v.live_delays]
    every = [delay for v in viewers for delay in v.delays]
    floor_p50 = stats.ms(stats.median(floor_visit.delays))
    floor_p99 = stats.ms(stats.percentile(floor_visit.delays, 99))
    live_p99 = stats.ms(stats.percentile(live, 99))
    target = viral_delay_p99_ms(tokens_per_second)
    opened = [v.ws_opened_at - run.shared_at for v in viewers if v.ws_opened_at and run.shared_at]
    incomplete = sum(1 for v in viewers if not v.ok)
    out_of_order = sum(v.seq_errors for v in viewers)
    return [
        Figure(
            "viewers_incomplete",
            "viewers without every delta of the stored answer",
            "",
            incomplete,
            None,
            "",
            "0",
            incomplete == 0,
        ),
        Figure(
            "viewer_seq_errors",
            "deltas out of order or repeated, all viewers",
            "",
            out_of_order,
            None,
            "",
            "0",
            out_of_order == 0,
        ),
        Figure(
            "viewer_delay_p50_ms",
            "emission → receipt p50, viewers (live)",
            "ms",
            stats.ms(stats.median(live)),
            floor_p50,
            "diff",
        ),
        Figure(
            "viewer_delay_p99_ms",
            "emission → receipt p99, viewers (live)",
            "ms",
            live_p99,
            floor_p99,
            "diff",
            f"≤ {target:.0f} ms",
            stats.within(live_p99, target),
        ),
        Figure(
            "viewer_delay_all_p99_ms",
            "emission → receipt p99, viewers (incl. replay)",
            "ms",
            stats.ms(stats.percentile(every, 99)),
        ),
        Figure(
            "owner_delay_p99_ms",
            "emission → receipt p99, the owner",
            "ms",
            stats.ms(stats.percentile(run.owner.delays, 99)),
            floor_p99,
            "diff",
        ),
        Figure("viewer_open_p50_s", "stream open after the link, p50", "s", stats.median(opened)),
        Figure(
            "viewer_open_max_s", "stream open after the link, max", "s", max(opened, default=None)
        ),
        Figure(
            "backend_peak_in_flight",
            "streams in flight at the backend, peak",
            "",
            peak_in_flight,
        ),
    ]


async def measure_viral(
    config: Config, simulator: Simulator, stack: Stack, source: dict[str, Any]
) -> dict[str, Any]:
    """Warm the stack, then the viral run under a CPU meter, then the floor's one reader."""
    base = stack.base_url
    slug = config.profile.share_sample
    viewers = config.visitors
    timeout = config.visitor_timeout
    say("warming up with one visitor")
    await run_visitors(base, [slug], timeout)
    await asyncio.to_thread(simulator.wait_idle)
    roots = process_roots(stack, simulator)
    await procs.wait_for_quiet(roots, "the viral run")
    say(f"viral: one owner asks {slug!r}, {viewers} strangers open the share link at once")
    cpu = procs.CpuMeter(roots).start()
    viral = await run(base, slug, viewers, timeout)
    used = cpu.stop()
    peak_in_flight = simulator.stats().get("peak_active")
    say(f"  {sum(v.ok for v in viral.viewers)} of {viewers} viewers got the whole answer")
    await asyncio.to_thread(simulator.wait_idle)
    say("floor: one reader straight from the simulator")
    prompt = next(s["prompt"] for s in await fetch_samples(base) if s["slug"] == slug)
    reader = floor.FloorVisit(index=0, slug=slug, start_at=time.time())
    await floor.stream_one(simulator.url, prompt, reader, config.max_new_tokens)
    found = figures(viral, reader, config.tokens_per_second, peak_in_flight)
    print()
    print(report.table(found))
    print()
    say(report.verdict(found))
    cores = ", ".join(
        f"{name} {value:.2f}" for name, value in used.items() if name not in ("cpus", "others")
    )
    say(f"CPU cores used during the viral run: {cores}; other processes {used['others']:.2f}")
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": provenance.environment(config.sim_args, stack, source),
        "config": provenance.run_config(config, stack, viewers=viewers, sample=slug),
        "figures": [figure.as_dict() for figure in found],
        "verdict": report.verdict(found),
        "cpu_cores_used": used,
        "owner": run_summary([viral.owner]),
        "viewers": run_summary(viral.viewers),
        "problems": [v.summary() for v in viral.viewers if not v.ok][:20],
    }


def run_summary(visits: list[StackVisit]) -> dict[str, Any]:
    return {
        "n": len(visits),
        "answered_in_full": sum(v.ok for v in visits),
        "reconnects": sum(v.reconnects for v in visits),
        "live_delay_ms": stats.in_ms(stats.summarize([d for v in visits for d in v.live_delays])),
    }
