"""daphne's own command line (`python -m daphne`), keeping idle HTTP connections open as long as
uvicorn does (deploy/asgi_server.py's KEEP_ALIVE_SECONDS).

daphne has no option for it (`--http-timeout` bounds a response, not the wait between
requests): Twisted's HTTP factory closes a connection after 60 idle seconds, sooner than the
proxy (Caddy: 2 min) stops reusing it, so a request could go down a connection being closed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from daphne.cli import CommandLineInterface
from daphne.server import Server

from deploy.asgi_server import KEEP_ALIVE_SECONDS

if TYPE_CHECKING:
    from twisted.web.http import HTTPFactory


class KeepAliveServer(Server):
    """daphne's server, whose HTTP factory gives every connection the longer idle timeout.

    `Server.run` builds the factory and starts serving in one call, so the timeout is set as the
    factory is handed to the server, before anything listens."""

    @property
    def http_factory(self) -> HTTPFactory:
        return self._keep_alive_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        factory.timeOut = KEEP_ALIVE_SECONDS
        self._keep_alive_factory = factory


class KeepAliveCommandLine(CommandLineInterface):
    server_class = KeepAliveServer


if __name__ == "__main__":
    KeepAliveCommandLine.entrypoint()
