"""Repair queued/running messages left behind by crashes (also runs every 5 s via beat)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from playground import services


class Command(BaseCommand):
    help = "Re-dispatch lost queued work and fail or requeue generations whose worker died."

    def handle(self, *args: Any, **options: Any) -> None:
        result = services.reconcile()
        self.stdout.write(", ".join(f"{key}: {value}" for key, value in result.items()))
