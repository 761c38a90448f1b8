"""Celery tasks: thin wrappers around services."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from celery.signals import task_postrun, task_prerun, worker_shutting_down

from playground import logs, services
from playground.ops import dashboard


@shared_task(name="playground.tasks.generate", ignore_result=True)
def generate(message_id: str) -> None:
    services.run_generation(message_id)


# Expires so that a backlog of beats after an outage does not run the repair many times over.
@shared_task(name="playground.tasks.reconcile", ignore_result=True, expires=10)
def reconcile() -> dict[str, int]:
    return services.reconcile()


@shared_task(name="playground.tasks.purge_expired", ignore_result=True)
def purge_expired() -> int:
    return services.purge_expired()


# One point of the dashboard's last-hour charts; an old beat is worthless, so it expires.
@shared_task(name="playground.tasks.sample_metrics", ignore_result=True, expires=5)
def sample_metrics() -> dict | None:
    return dashboard.sample()


@worker_shutting_down.connect
def interrupt_generations(**kwargs: Any) -> None:
    services.interrupt_generations()


# A worker thread runs one task after another: each task's lines carry its own request's id
# (sent by services/dispatching.py), or none, never the previous task's.
@task_prerun.connect
def adopt_request_id(task: Task, **kwargs: Any) -> None:
    logs.set_request_id((task.request.headers or {}).get(logs.TASK_HEADER))


@task_postrun.connect
def forget_request_id(**kwargs: Any) -> None:
    logs.set_request_id(None)
