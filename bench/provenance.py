"""What a run ran: the commit and files, the machine, and the stack's settings."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from typing import Any

from bench.config import Config
from devtools.stack import ROOT, Stack


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


def environment(sim_args: list[str], stack: Stack, source: dict[str, Any]) -> dict[str, Any]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        **source,
        "simulator_args": sim_args,
        "stack_env": {
            key: stack.env.get(key)
            for key in (
                "GENERATION_CONCURRENCY",
                "QUEUE_MAX_WAITING",
                "IP_MAX_ACTIVE",
                "IP_RATE_LIMIT",
                "STREAM_FLUSH_INTERVAL",
                "STREAM_CROWD_FRAMES_PER_SECOND",
                "MAX_NEW_TOKENS",
            )
        },
        "worker_concurrency": stack.worker_concurrency or stack.default_worker_concurrency(),
    }


def run_config(config: Config, stack: Stack, **specific: Any) -> dict[str, Any]:
    """What a run's JSON says it ran, for every profile: the profile, its pace and the stack's
    shape; `specific` adds what only that profile has."""
    return {
        "profile": config.profile.name,
        "slots": config.slots,
        "tokens_per_second": config.tokens_per_second,
        "web_processes": stack.web_processes(),
        "asgi_server": stack.asgi_server,
        "uvicorn_ws": config.uvicorn_ws,
        "worker_processes": config.worker_processes,
        "database": "postgresql" if config.database_url else "sqlite",
        **specific,
    }
