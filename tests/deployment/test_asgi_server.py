"""The web process's launcher (deploy/asgi_server.py): which ASGI server ASGI_SERVER picks, the
command lines `make run` and the image start, and daphne's keep-alive (deploy/daphne_server.py).
The compose file's and the image's use of it is checked in test_deployment.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deploy import asgi_server
from deploy.asgi_server import (
    APPLICATION,
    UVICORN_WS_IMPLEMENTATIONS,
    parse_asgi_server,
    parse_uvicorn_ws,
    server_command,
)
from devtools.stack import Stack

ROOT = Path(__file__).resolve().parents[2]

# Runs daphne's server as `python -m deploy.daphne_server` would, up to where Twisted's loop
# would start serving, and prints the idle timeout of the factory and of a connection it builds.
KEEP_ALIVE_PROBE = """
import sys
from deploy.daphne_server import KeepAliveCommandLine
from twisted.internet import reactor
reactor.run = lambda *args, **kwargs: None
cli = KeepAliveCommandLine()
cli.run(sys.argv[1:])
factory = cli.server.http_factory
print(factory.timeOut, factory.buildProtocol(None).timeOut)
"""


@pytest.mark.parametrize(
    ("value", "server"),
    [(None, "uvicorn"), ("", "uvicorn"), (" uvicorn ", "uvicorn"), ("Daphne", "daphne")],
)
def test_asgi_server_defaults_to_uvicorn_and_accepts_either_name(
    value: str | None, server: str
) -> None:
    env = {} if value is None else {"ASGI_SERVER": value}

    assert parse_asgi_server(env) == server


@pytest.mark.parametrize("value", ["gunicorn", "daphne,uvicorn", "1"])
def test_an_unknown_asgi_server_stops_with_the_variable_and_the_choices(value: str) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_asgi_server({"ASGI_SERVER": value})

    assert str(stopped.value) == f"ASGI_SERVER={value!r} is invalid: expected uvicorn or daphne."


@pytest.mark.parametrize(
    ("value", "implementation"),
    [
        (None, UVICORN_WS_IMPLEMENTATIONS[0]),
        ("", UVICORN_WS_IMPLEMENTATIONS[0]),
        ("websockets", "websockets"),
        (" WebSockets-SansIO ", "websockets-sansio"),
    ],
)
def test_uvicorn_ws_defaults_to_the_shipped_implementation_and_accepts_either(
    value: str | None, implementation: str
) -> None:
    env = {} if value is None else {"UVICORN_WS": value}

    assert parse_uvicorn_ws(env) == implementation


@pytest.mark.parametrize("value", ["wsproto", "auto", "none"])
def test_an_unknown_uvicorn_ws_stops_with_the_variable_and_the_choices(value: str) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_uvicorn_ws({"UVICORN_WS": value})

    assert str(stopped.value) == (
        f"UVICORN_WS={value!r} is invalid: expected websockets-sansio or websockets."
    )


@pytest.mark.parametrize("implementation", UVICORN_WS_IMPLEMENTATIONS)
def test_uvicorn_serves_websockets_with_the_implementation_named(implementation: str) -> None:
    from uvicorn.main import main as uvicorn_main

    command = server_command("uvicorn", 7, implementation)

    assert uvicorn_main.make_context("uvicorn", command[3:]).params["ws"] == implementation
    assert Stack(env={"UVICORN_WS": implementation}).uvicorn_ws == implementation


def test_make_run_refuses_an_unknown_asgi_server_before_starting_anything() -> None:
    with pytest.raises(SystemExit, match="ASGI_SERVER='hypercorn' is invalid"):
        Stack(env={"ASGI_SERVER": "hypercorn"})

    assert Stack(env={"ASGI_SERVER": "daphne"}).asgi_server == "daphne"
    assert Stack(env={}).asgi_server == "uvicorn"


def test_both_servers_take_make_runs_inherited_socket_by_descriptor() -> None:
    from daphne.cli import CommandLineInterface
    from uvicorn.main import main as uvicorn_main

    uvicorn = server_command("uvicorn", 7)
    daphne = server_command("daphne", 7)

    assert uvicorn[:3] == [sys.executable, "-m", "uvicorn"]
    assert uvicorn_main.make_context("uvicorn", uvicorn[3:]).params["fd"] == 7
    assert daphne[:3] == [sys.executable, "-m", "deploy.daphne_server"]
    parsed = CommandLineInterface().parser.parse_args(daphne[3:])
    assert (parsed.file_descriptor, parsed.host, parsed.port) == (7, None, None)
    assert uvicorn[-1] == daphne[-1] == APPLICATION


def test_the_launcher_stops_on_an_unknown_server_without_starting_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[list[str]] = []
    monkeypatch.setattr(asgi_server.os, "execv", lambda path, args: started.append(args))
    monkeypatch.setenv("ASGI_SERVER", "twisted")

    with pytest.raises(SystemExit, match="ASGI_SERVER='twisted' is invalid"):
        asgi_server.main(["--host", "0.0.0.0", "--port", "8000"])

    assert started == []


def test_daphne_keeps_idle_connections_open_as_long_as_uvicorn(tmp_path: Path) -> None:
    from uvicorn.main import main as uvicorn_main

    uvicorn = server_command("uvicorn", ("127.0.0.1", 0))[3:]
    keep_alive = uvicorn_main.make_context("uvicorn", uvicorn).params["timeout_keep_alive"]
    arguments = server_command("daphne", ("127.0.0.1", 0))[3:]

    result = subprocess.run(
        [sys.executable, "-c", KEEP_ALIVE_PROBE, *arguments],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    # Twisted's own idle timeout is 60 s, shorter than Caddy keeps a connection for reuse.
    assert result.stdout.split() == [str(keep_alive)] * 2
