"""The web process's command line: uvicorn (the default) or daphne (`ASGI_SERVER=daphne`).

`python -m deploy.asgi_server --host 0.0.0.0 --port 8000` is what the image runs (the
Dockerfile's CMD, docker-compose.yml's web service): it reads ASGI_SERVER and becomes that
server. `make run` (devtools/stack.py) starts the same command lines on its shared listening
socket (`--fd`). Only this module says how each server is run, so production, `make run`, the
integration tests and the benchmark serve alike.

Standard library only, and no Django: it runs before the server imports the application.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

ASGI_SERVERS = ("uvicorn", "daphne")
APPLICATION = "playground.asgi:application"

# A connection idles open for 130 s, longer than a proxy keeps one for reuse (Caddy: 2 min),
# so the server never closes one that a request is already on its way down: under a rush its
# loop reads that request after the idle timer fired, and uvicorn's 5 s default lost 22 of a
# thousand POSTs sent right after each visitor's GET (bench/README.md).
KEEP_ALIVE_SECONDS = 130

# asyncio's transports write a frame the moment it is sent (Twisted, under daphne, waits for the
# next loop turn and spent two epoll changes on each of a rush's deltas); small frames are not
# compressed; the lifespan protocol runs what the process does at startup (handlers.py); the
# client address is the socket's, since playground/visitors.py reads X-Forwarded-For itself
# (NUM_PROXIES).
UVICORN_OPTIONS = (
    "--loop", "uvloop", "--http", "httptools",
    "--ws-per-message-deflate", "false", "--lifespan", "on",
    "--no-proxy-headers", "--no-server-header", "--timeout-keep-alive", str(KEEP_ALIVE_SECONDS),
)  # fmt: skip

# uvicorn's two WebSocket implementations over the websockets library (UVICORN_WS): its legacy
# protocol, which uvicorn deprecates, and the sans-I/O one. The default is the one measured
# faster under the benchmark's rush (README: Decisions worth knowing).
UVICORN_WS_IMPLEMENTATIONS = ("websockets-sansio", "websockets")

# daphne told to serve as uvicorn does above. It already leaves X-Forwarded-For alone and offers
# no per-message compression, and has no lifespan protocol (the first viewer's consumer
# subscribes the process instead); the keep-alive has no option (deploy/daphne_server.py).
# A stream socket lives as long as its viewer keeps it (daphne closes it after a day); the
# handshake, the consumer's accept included, may take 10 s as websockets allows uvicorn; pings
# every 20 s, unanswered for 20 s, close the socket, as uvicorn's.
DAPHNE_OPTIONS = (
    "--websocket_timeout", "-1", "--websocket_connect_timeout", "10",
    "--ping-interval", "20", "--ping-timeout", "20", "--no-server-name",
)  # fmt: skip


def parse_asgi_server(env: Mapping[str, str]) -> str:
    """ASGI_SERVER: uvicorn when unset or empty; any other value than the two stops the process."""
    raw = env.get("ASGI_SERVER", "")
    server = raw.strip().lower() or "uvicorn"
    if server not in ASGI_SERVERS:
        raise SystemExit(f"ASGI_SERVER={raw!r} is invalid: expected uvicorn or daphne.")
    return server


def parse_uvicorn_ws(env: Mapping[str, str]) -> str:
    """UVICORN_WS: the first of UVICORN_WS_IMPLEMENTATIONS when unset or empty."""
    raw = env.get("UVICORN_WS", "")
    implementation = raw.strip().lower() or UVICORN_WS_IMPLEMENTATIONS[0]
    if implementation not in UVICORN_WS_IMPLEMENTATIONS:
        choices = " or ".join(UVICORN_WS_IMPLEMENTATIONS)
        raise SystemExit(f"UVICORN_WS={raw!r} is invalid: expected {choices}.")
    return implementation


def server_command(
    server: str,
    listen: tuple[str, int] | int,
    uvicorn_ws: str = UVICORN_WS_IMPLEMENTATIONS[0],
) -> list[str]:
    """The command line of a web process: `server` serving the application at (host, port), or
    on the inherited listening socket whose file descriptor `listen` is; uvicorn's WebSockets
    by `uvicorn_ws`."""
    if isinstance(listen, int):
        where = ["--fd", str(listen)]
    else:
        host, port = listen
        where = ["--host" if server == "uvicorn" else "--bind", host, "--port", str(port)]
    if server == "uvicorn":
        options = [*UVICORN_OPTIONS, "--ws", uvicorn_ws]
        return [sys.executable, "-m", "uvicorn", *where, *options, APPLICATION]
    if server == "daphne":
        return [
            sys.executable, "-m", "deploy.daphne_server", *where, *DAPHNE_OPTIONS, APPLICATION
        ]  # fmt: skip
    raise ValueError(f"unknown ASGI server {server!r}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.asgi_server",
        description="Serve the playground with the ASGI server ASGI_SERVER names "
        "(uvicorn or daphne; default uvicorn).",
    )
    parser.add_argument("--host", required=True, help="the address to listen on")
    parser.add_argument("--port", type=int, required=True, help="the port to listen on")
    args = parser.parse_args(argv)
    command = server_command(
        parse_asgi_server(os.environ), (args.host, args.port), parse_uvicorn_ws(os.environ)
    )
    # The server takes this process's place, so the container's signals reach it directly.
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
