"""What is true right now: the line, the slots and limits of each backend, the controls in
force and the open WebSockets. /metrics exposes them, the dashboard shows them and the sampler
keeps them for the charts; each gathers them here, from the database and Redis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from playground import controls, rotation, services, slots
from playground.models import Message
from playground.ops import metrics


@dataclass(frozen=True)
class BackendGauges:
    url: str
    healthy: bool  # answering health checks (not marked down)
    disabled: bool  # taken out of rotation by an operator
    slots_in_use: int
    limit: int


@dataclass(frozen=True)
class Gauges:
    waiting: int
    running: int
    capacity: int
    paused: bool
    draining: bool
    websockets: int
    backends: list[BackendGauges] = field(default_factory=list)


def current(state: controls.ControlState | None = None) -> Gauges:
    """The gauges now; `state` when the caller has already read the controls."""
    state = state or controls.state()
    healthy = set(slots.healthy_backends(include_disabled=True))
    backends = [
        BackendGauges(
            url=url,
            healthy=url in healthy,
            disabled=url in state.disabled,
            slots_in_use=slots.slots_in_use(url),
            limit=state.concurrency.get(url, settings.GENERATION_CONCURRENCY),
        )
        for url in rotation.backends()
    ]
    running = Message.objects.filter(
        role=Message.Role.ASSISTANT, status=Message.Status.RUNNING
    ).count()
    return Gauges(
        waiting=services.waiting_count(),
        running=running,
        capacity=sum(b.limit for b in backends if b.healthy and not b.disabled),
        paused=state.paused,
        draining=state.draining,
        websockets=metrics.websocket_viewers(),
        backends=backends,
    )
