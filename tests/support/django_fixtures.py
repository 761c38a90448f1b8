"""The Django side's fixtures: a clean Redis per test, a configured backend, captured task
enqueues, samples and visitors.

Only the conftests of the folders that test the Django project import them (playground,
conversations, ops, deployment), so the tests of `inference/` (tests/inference) run without
Redis and without a database."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from playground import services, slots
from playground.models import SamplePrompt
from playground.realtime import redis_clients

# The stream consumer tests run each socket's consumer inside this process under pytest-django,
# and there each connect keeps a pooled PostgreSQL connection until the process ends (under
# uvicorn it gives it back: 30 sockets in a row leave a web process at its idle connection
# count). The test process's pool is made large enough for all of them, rather than have the
# tests after them wait for the pool's timeout.
TEST_PROCESS_POOL_SIZE = 80


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    if isinstance(pool, dict):
        pool["max_size"] = max(pool["max_size"], TEST_PROCESS_POOL_SIZE)


@pytest.fixture(autouse=True)
def clean_redis() -> Iterator[None]:
    """Each test starts with an empty Redis database (the session's own, never a shared one)
    and no queue snapshot remembered from another test's line."""
    redis_clients.redis_client().flushdb()
    # The leases of an empty database are all there: none (see slots.LEASES_INTACT_KEY).
    slots.restore_leases([])
    services.forget_queue_snapshot()
    yield
    redis_clients.redis_client().flushdb()


@pytest.fixture
def backend(settings: Any) -> str:
    url = "http://backend.test:8080"
    settings.TGI_URLS = [url]
    settings.GENERATION_CONCURRENCY = 2
    return url


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Message ids handed to Celery's generate task, instead of sending them to a broker no
    worker reads."""
    from playground.celery import app

    sent: list[str] = []

    def send_task(name: str, args: list[str], **options: Any) -> None:
        assert name == "playground.tasks.generate"
        sent.extend(args)

    monkeypatch.setattr(app, "send_task", send_task)
    return sent


@pytest.fixture
def samples(db: None) -> list[SamplePrompt]:
    from inference.samples import SAMPLES

    return [
        SamplePrompt.objects.create(
            slug=s.slug, title=s.title, prompt=s.prompt, expected_answer=s.expected, position=i
        )
        for i, s in enumerate(SAMPLES)
    ]


@pytest.fixture
def visitor(db: None) -> Client:
    """A browser-like client with a session and a CSRF token, checking CSRF like production."""
    client = Client(enforce_csrf_checks=True)
    client.get("/api/v1/status")
    client.defaults["HTTP_X_CSRFTOKEN"] = client.cookies["csrftoken"].value
    return client


@pytest.fixture
def make_visitor(db: None) -> Iterator[Callable[..., Client]]:
    """New visitors, each with a fresh session and CSRF header, from distinct addresses."""
    addresses = (f"10.0.{n // 250}.{n % 250 + 1}" for n in itertools.count())

    def make(ip: str | None = None, *, csrf: bool = True) -> Client:
        client = Client(enforce_csrf_checks=True, REMOTE_ADDR=ip or next(addresses))
        client.get("/api/v1/status")
        if csrf:
            client.defaults["HTTP_X_CSRFTOKEN"] = client.cookies["csrftoken"].value
        return client

    yield make
