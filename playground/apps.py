from __future__ import annotations

import sys
from pathlib import Path

from django.apps import AppConfig

THREAD_SWITCH_INTERVAL_SECONDS = 0.0001


class PlaygroundConfig(AppConfig):
    name = "playground"
    # Explicit, because an editable install can make the package visible at two paths.
    path = str(Path(__file__).resolve().parent)
    verbose_name = "Reflection Playground"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_delete, post_save

        from playground import (
            checks,  # noqa: F401  (registers the system checks)
            controls,
            models,
            sqlite,
        )
        from playground.ops import metrics

        connection_created.connect(sqlite.keep_log_open, dispatch_uid="playground.sqlite")
        models.message_finished.connect(
            metrics.count_finished_message, dispatch_uid="playground.ops.metrics"
        )
        # Admission reads when blocks end from Redis: every change to a block rewrites it.
        for changed in (post_save, post_delete):
            changed.connect(
                controls.remember_when_blocks_end,
                sender=models.Block,
                dispatch_uid=f"playground.controls.blocks.{changed is post_save}",
            )

        # A web or worker process relays deltas on its event-loop thread while other threads
        # (Django's view threads, Celery's pool) hold the interpreter lock for CPU work, and the
        # loop thread needs the lock back after every wait. Python makes a waiting thread wait
        # up to 5 ms by default; under a burst of submissions the web process's loop thread
        # then fell behind by hundreds of ms (bench/README.md has the figures).
        sys.setswitchinterval(THREAD_SWITCH_INTERVAL_SECONDS)
