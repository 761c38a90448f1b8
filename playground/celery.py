"""The Celery application: generation tasks and the periodic reconciler."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "playground.settings")

app = Celery("playground")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["playground"])
app.conf.beat_schedule = {
    "reconcile": {"task": "playground.tasks.reconcile", "schedule": 5.0},
    "purge-expired": {"task": "playground.tasks.purge_expired", "schedule": 3600.0},
    "sample-metrics": {"task": "playground.tasks.sample_metrics", "schedule": 5.0},
}
