"""Delete conversations older than CONVERSATION_RETENTION_DAYS (also runs hourly via beat)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from playground import services


class Command(BaseCommand):
    help = "Delete conversations untouched for CONVERSATION_RETENTION_DAYS days."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"deleted {services.purge_expired()} conversations")
