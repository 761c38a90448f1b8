"""The whole stack served by daphne (`ASGI_SERVER=daphne`), the ASGI server DESIGN.md names: the
JSON API and the WebSocket through daphne's own command line (deploy/daphne_server.py), which
has no lifespan protocol, so the first viewer's consumer subscribes its process to the deltas.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.stack import Stack
from tests.integration.stack import Visitor, deltas_of, playground_stack, sections_from

# Which program each web process runs is read from /proc, as `ps` would.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc"),
]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with playground_stack("daphne", redis_db=15, ASGI_SERVER="daphne") as running:
        yield running


def running_command(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def test_a_whole_answer_streams_in_order_through_daphne(stack: Stack) -> None:
    web = [process for name, process in stack.processes.items() if name.startswith("web")]
    visitor = Visitor(stack.base_url)
    created = visitor.post("/api/v1/conversations", {"sample": "strawberry"})
    assert created.status_code == 201
    message = created.json()["message"]

    events = visitor.events(message["stream_url"], after=0)

    assert web and all(process.poll() is None for process in web)
    for process in web:
        assert running_command(process.pid)[1:3] == ["-m", "deploy.daphne_server"]
    deltas = deltas_of(events)
    assert [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert events[-1]["type"] == "done"
    stored = visitor.get(f"/api/v1/messages/{message['id']}").json()
    assert stored["status"] == "done"
    assert sections_from(deltas) == stored["sections"]
    assert stored["sections"]["reflections"] and "3" in stored["sections"]["output"]
    visitor.close()
