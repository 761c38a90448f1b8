"""Starting and stopping what the benchmark runs against: one simulator and one stack."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg import sql

from deploy.asgi_server import UVICORN_WS_IMPLEMENTATIONS
from devtools.processes import free_port
from devtools.stack import ROOT, Stack

LISTENING = re.compile(r"listening on (http://\S+)")
# Variables of the caller's environment that would point the stack at someone else's services.
FOREIGN = ("REDIS_URL", "DATABASE_URL", "TGI_URL")


class Simulator:
    """One `python -m inference.sim` process, shared by the stack run and the floor run."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 30) -> str:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115  (lives as long as the process)
        # Its own session: a Ctrl-C in the terminal reaches only the benchmark, which then
        # stops the simulator itself after the stack, in order.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "inference.sim", *self.args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log_path.read_text(errors="replace"))
            if found:
                self.url = found.group(1)
                return self.url
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the simulator exited with {self.process.returncode}; see {self.log_path}"
                )
            time.sleep(0.05)
        raise TimeoutError(f"the simulator did not say it was listening; see {self.log_path}")

    def stats(self) -> dict[str, int]:
        return httpx.get(f"{self.url}/sim/stats", timeout=5).json()

    def wait_idle(self, timeout: float = 60, settle: float = 1.0) -> bool:
        """Wait until nothing is queued or decoding, then `settle` more seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                stats = self.stats()
                if not stats.get("active") and not stats.get("queued") and not stats.get("batch"):
                    time.sleep(settle)
                    return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def stack_environment(sim_url: str, slots: int, work_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    env.update(
        {
            "TGI_URL": sim_url,
            "GENERATION_CONCURRENCY": str(slots),
            # The rush must measure the queue, not the abuse limits: every visitor comes from
            # 127.0.0.1, and nobody may be turned away for a full line.
            "QUEUE_MAX_WAITING": "10000",
            "IP_MAX_ACTIVE": "100000",
            "IP_RATE_LIMIT": "1000000/m",
            "IP_MAX_WEBSOCKETS": "100000",
            "SECRET_KEY": "bench-only-not-secret",
            "DATABASE_URL": f"sqlite:///{work_dir / 'bench.sqlite3'}",
            "VAR_DIR": str(work_dir),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def make_stack(
    sim_url: str,
    slots: int,
    work_dir: Path,
    log_dir: Path,
    database_url: str | None = None,
    asgi_server: str = "uvicorn",
    uvicorn_ws: str = UVICORN_WS_IMPLEMENTATIONS[0],
) -> Stack:
    """A stack like `make run`'s, with its own embedded Redis and database, not started yet:
    SQLite in `work_dir`, or `database_url` (a fresh database of its own, see ScratchDatabase);
    its web processes run `asgi_server` (ASGI_SERVER), uvicorn with `uvicorn_ws` (UVICORN_WS)."""
    env = stack_environment(sim_url, slots, work_dir)
    if database_url:
        env["DATABASE_URL"] = database_url
    env["ASGI_SERVER"] = asgi_server
    env["UVICORN_WS"] = uvicorn_ws
    return Stack(port=free_port(), env=env, quiet=True, log_dir=log_dir)


class ScratchDatabase:
    """A new, empty PostgreSQL database beside the one a URL names, dropped afterwards.

    The stack must start with no history (no earlier answers in the ETA model, nobody in
    line), and the server's own database is never written to."""

    def __init__(self, server_url: str) -> None:
        parts = urlsplit(server_url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise SystemExit(f"--database-url must be a postgres:// URL, not {server_url!r}")
        self.server_url = server_url
        self.name = f"playground_bench_{os.getpid()}_{int(time.time())}"
        self.url = urlunsplit(parts._replace(path=f"/{self.name}"))

    def _admin(self) -> psycopg.Connection:
        return psycopg.connect(self.server_url, autocommit=True)

    def create(self) -> str:
        with self._admin() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        return self.url

    def drop(self) -> None:
        with contextlib.suppress(psycopg.Error), self._admin() as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )


def process_roots(stack: Stack, simulator: Simulator) -> dict[str, list[int]]:
    """The process trees a run measures, by name: the benchmark itself (its visitors), the
    stack's web and worker processes, the simulator and the stack's Redis."""
    roots = {
        "bench": [os.getpid()],
        "web": [p.pid for name, p in stack.processes.items() if name.startswith("web")],
        "worker": [p.pid for name, p in stack.processes.items() if name.startswith("worker")],
        "simulator": [_pid(simulator.process)],
    }
    if stack.redis is not None:
        roots["redis"] = [_pid(stack.redis.process)]
    return roots


def _pid(process: subprocess.Popen[bytes] | None) -> int:
    return process.pid if process is not None else -1
