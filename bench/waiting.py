"""The waiting profile: a thousand visitors in line with their pages open, and what each costs.

The backend's one slot is taken by an answer that crawls (the profile's pace), so everyone
after the first waits. Each visitor loads the page, asks, opens their answer's stream and
reads its first event (their place in line), and stays: the state of a launch-day line once
the rush of submissions is over. The web processes' and workers' RSS is read before anyone
came and again once everyone waits; the growth divided by the visitors waiting is the cost of
one waiting visitor. Nothing here has a floor: a backend holds no line.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from bench import procs, provenance, report
from bench.config import WAITING_KIB_TARGET, Config
from bench.console import say
from bench.processes import Simulator, process_roots
from bench.report import Figure
from bench.visitors import StackVisitor
from devtools.stack import Stack

# Visitors asking at once: enough to be a crowd, few enough that what is measured is the line,
# not a thousand requests in flight.
AT_ONCE = 50
# The line is read again this long after the last stream opened.
SETTLE_SECONDS = 5.0


@dataclass
class WaitingRun:
    visitors: int
    asked: int  # answered 201
    told_a_place: int  # streams whose first event was a place in line (`queued`, position ≥ 1)
    before_kib: dict[str, int | None]
    waiting_kib: dict[str, int | None]


def growth_per_visitor(before: int | None, after: int | None, visitors: int) -> float | None:
    """KiB of RSS per waiting visitor, from a tree's RSS before anyone came and once all wait."""
    if before is None or after is None or visitors <= 0:
        return None
    return (after - before) / visitors


def tree_rss(roots: dict[str, list[int]], names: tuple[str, ...]) -> dict[str, int | None]:
    return {name: procs.tree_kib(procs.process_tree(roots[name]), "VmRSS") for name in names}


async def wait_in_line(visitor: StackVisitor, at_once: asyncio.Semaphore) -> Any:
    """Ask, open the stream, read the first event; return the open socket (or None)."""
    async with at_once:
        await visitor.open()
        await visitor.submit()
        if visitor.visit.stream_url is None:
            return None
        socket = await visitor.sockets.ws_connect(
            visitor.ws_base + visitor.visit.stream_url,
            headers={"Cookie": visitor.cookie_header()},
        )
        first = await socket.receive(timeout=60)
        event = json.loads(first.data) if isinstance(first.data, str) else {}
        visitor.visit.positions.append(event.get("position"))
        return socket


async def run(base_url: str, visitors: int, roots: dict[str, list[int]]) -> WaitingRun:
    names = ("web", "worker")
    before = tree_rss(roots, names)
    crowd = [StackVisitor(base_url, index, "strawberry") for index in range(visitors)]
    sockets: list[Any] = []
    try:
        at_once = asyncio.Semaphore(AT_ONCE)
        opened = await asyncio.gather(
            *(wait_in_line(v, at_once) for v in crowd), return_exceptions=True
        )
        sockets = [s for s in opened if s is not None and not isinstance(s, BaseException)]
        await asyncio.sleep(SETTLE_SECONDS)
        waiting = tree_rss(roots, names)
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
        await asyncio.gather(*(v.aclose() for v in crowd), return_exceptions=True)
    told = sum(
        1
        for v in crowd
        if v.visit.positions
        and isinstance(v.visit.positions[-1], int)
        and v.visit.positions[-1] >= 1
    )
    return WaitingRun(
        visitors=visitors,
        asked=sum(1 for v in crowd if v.visit.post_status == 201),
        told_a_place=told,
        before_kib=before,
        waiting_kib=waiting,
    )


def figures(run: WaitingRun) -> list[Figure]:
    web = growth_per_visitor(run.before_kib["web"], run.waiting_kib["web"], run.told_a_place)
    before_all = _total(run.before_kib)
    waiting_all = _total(run.waiting_kib)
    both = growth_per_visitor(before_all, waiting_all, run.told_a_place)
    waiting_web_mib = run.waiting_kib["web"] / 1024 if run.waiting_kib["web"] else None
    return [
        Figure("asked", "questions accepted (201)", "", run.asked, None, "", f"{run.visitors}",
               run.asked == run.visitors),
        Figure("told_a_place", "streams told a place in line", "", run.told_a_place, None, "",
               f"≥ {run.visitors - 1}", run.told_a_place >= run.visitors - 1),
        Figure("web_rss_waiting_mib", "RSS, web, everyone waiting", "MiB", waiting_web_mib),
        Figure("web_kib_per_waiting", "RSS growth per waiting visitor, web", "KiB", web, None,
               "", f"≤ {WAITING_KIB_TARGET:.0f} KiB",
               web is not None and web <= WAITING_KIB_TARGET),
        Figure("kib_per_waiting", "RSS growth per waiting visitor, web+workers", "KiB", both),
    ]  # fmt: skip


def _total(values: dict[str, int | None]) -> int | None:
    present = [v for v in values.values() if v is not None]
    return sum(present) if len(present) == len(values) else None


async def measure_waiting(
    config: Config, simulator: Simulator, stack: Stack, source: dict[str, Any]
) -> dict[str, Any]:
    roots = process_roots(stack, simulator)
    await procs.wait_for_quiet(roots, "the line")
    say(f"waiting: {config.visitors} visitors ask and keep their streams open, one slot busy")
    cpu = procs.CpuMeter(roots).start()
    started = time.monotonic()
    waiting = await run(stack.base_url, config.visitors, roots)
    used = cpu.stop()
    say(f"  {waiting.told_a_place} told a place in {time.monotonic() - started:.1f} s")
    found = figures(waiting)
    print()
    print(report.table(found))
    print()
    say(report.verdict(found))
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": provenance.environment(config.sim_args, stack, source),
        "config": provenance.run_config(config, stack, visitors=config.visitors),
        "figures": [figure.as_dict() for figure in found],
        "verdict": report.verdict(found),
        "cpu_cores_used": used,
        "rss_kib": {"before": waiting.before_kib, "everyone_waiting": waiting.waiting_kib},
    }
