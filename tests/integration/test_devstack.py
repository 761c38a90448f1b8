"""`make run`'s supervisor: a dead worker or web process comes back, and nothing a dead child
started lives on beside its replacement or after the stack stops. Real processes, killed for
real (only their main pid, as a crash would, never their process group)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from devtools.processes import free_port
from devtools.stack import RESTART_LIMIT, Stack
from tests.integration.stack import playground_stack

# Process groups and parents are read from /proc, as `ps` would.
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")

REDIS_DB = 11


def living_processes() -> dict[int, tuple[int, int]]:
    """pid: (ppid, pgid) of every process that is not a zombie (a zombie runs nothing)."""
    found: dict[int, tuple[int, int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name, in parentheses, may hold spaces: the fields follow its last ")".
            state, ppid, pgid = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
        if state != "Z":
            found[int(stat.parent.name)] = (int(ppid), int(pgid))
    return found


def group_members(pgid: int) -> set[int]:
    return {pid for pid, (_, group) in living_processes().items() if group == pgid}


def children_of(pid: int) -> set[int]:
    return {child for child, (ppid, _) in living_processes().items() if ppid == pid}


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout} s")


def beat_of(worker_pid: int, timeout: float = 20) -> int:
    """The beat child of a `--beat` worker: Celery forks it while the worker starts."""
    wait_until(lambda: len(children_of(worker_pid)) == 1, timeout, "no single beat child")
    (beat,) = children_of(worker_pid)
    return beat


def healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.integration
def test_a_killed_web_process_is_started_again_on_the_same_socket() -> None:
    with playground_stack("devstack-web", redis_db=REDIS_DB) as stack:
        listener = stack.listener
        old = stack.processes["web"]
        os.kill(old.pid, signal.SIGKILL)
        old.wait(10)

        # With no web process alive, the supervisor's socket still takes the connection into its
        # backlog: the replacement, inheriting that very socket, answers it.
        waiting = socket.create_connection(("127.0.0.1", stack.port), timeout=20)
        waiting.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")

        assert stack.supervise_once() is None
        new = stack.processes["web"]
        assert new.pid != old.pid
        assert new.poll() is None
        assert stack.listener is listener
        with waiting:
            assert waiting.recv(1024).startswith(b"HTTP/1.1 200")
        wait_until(lambda: healthy(stack.base_url), 10, "/healthz did not answer again")


@pytest.mark.integration
def test_a_killed_worker_takes_its_beat_along_and_its_replacement_runs_the_only_beat() -> None:
    with playground_stack("devstack-beat", redis_db=REDIS_DB) as stack:
        old_worker = stack.processes["worker"].pid
        old_beat = beat_of(old_worker)
        os.kill(old_worker, signal.SIGKILL)
        stack.processes["worker"].wait(10)
        # The crash alone leaves the beat running, orphaned, in the dead worker's group.
        assert old_beat in group_members(old_worker)

        assert stack.supervise_once() is None

        assert group_members(old_worker) == set()
        new_worker = stack.processes["worker"].pid
        assert new_worker != old_worker
        new_beat = beat_of(new_worker)
        assert group_members(new_worker) == {new_worker, new_beat}

        stack.stop()
        assert group_members(old_worker) | group_members(new_worker) == set()


@pytest.mark.integration
def test_stopping_kills_the_beat_a_dead_worker_left_behind() -> None:
    # Ctrl-C before the supervisor noticed the crash: stop() still reaches the orphan.
    with playground_stack("devstack-orphan", redis_db=REDIS_DB) as stack:
        worker = stack.processes["worker"].pid
        beat = beat_of(worker)
        os.kill(worker, signal.SIGKILL)
        stack.processes["worker"].wait(10)
        assert beat in group_members(worker)

        stack.stop()
        assert group_members(worker) == set()


def test_a_child_that_keeps_dying_stops_the_stack_once_the_restart_budget_is_spent() -> None:
    stack = Stack(quiet=True)
    try:
        crashing = [sys.executable, "-c", "raise SystemExit(3)"]
        stack.respawn["worker"] = (crashing, ())
        stack._spawn("worker", crashing)
        for restart in range(RESTART_LIMIT):
            stack.processes["worker"].wait(10)
            assert stack.supervise_once() is None, f"gave up before restart {restart + 1}"
        stack.processes["worker"].wait(10)
        assert stack.supervise_once() == "worker exited with 3"
    finally:
        stack.stop()


def test_a_child_that_is_never_restarted_stops_the_stack_and_takes_its_group_along() -> None:
    stack = Stack(quiet=True)
    try:
        # The simulator's stand-in exits and leaves a child of its own running in its group.
        process = stack._spawn("simulator", ["sh", "-c", "sleep 60 & exit 1"], pass_fds=())
        process.wait(10)
        wait_until(lambda: len(group_members(process.pid)) == 1, 5, "no orphan to kill")

        assert stack.supervise_once() == "simulator exited with 1"
        assert group_members(process.pid) == set()
    finally:
        stack.stop()


@pytest.mark.integration
def test_make_run_says_what_runs_in_a_few_lines_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path,
) -> None:
    port = free_port()
    # As on a fresh machine: its own Redis, the simulator and SQLite, whatever CI has set.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "TGI_URL", "DATABASE_URL", "LOG_LEVEL")
    }
    env |= {"VAR_DIR": str(tmp_path), "PORT": str(port), "PYTHONUNBUFFERED": "1"}
    # In a session of its own, as a terminal's foreground job: Ctrl-C is a SIGINT to the group.
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.stack"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: any("serving http" in line for line in lines), 90, "no banner")
        assert healthy(base_url)
        # A visitor's page is served without a line per request.
        assert httpx.get(base_url + "/", timeout=10).status_code == 200
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(60)
        reader.join(10)

    output = "".join(lines)
    assert process.returncode == 0, output
    assert f"[playground] serving {base_url}" in output
    assert "Celery worker" in output and "uvicorn process" in output
    for noise in ("Traceback", "Warning", "System check", "created strawberry", "GET /"):
        assert noise not in output, output
    assert len(lines) <= 15, output
    assert lines[-1].strip() == "[playground] stopped"
