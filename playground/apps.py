from __future__ import annotations

from pathlib import Path

from django.apps import AppConfig


class PlaygroundConfig(AppConfig):
    name = "playground"
    # Explicit, because an editable install can make the package visible at two paths.
    path = str(Path(__file__).resolve().parent)
    verbose_name = "Reflection Playground"

    def ready(self) -> None:
        from playground import checks  # noqa: F401  (registers the system checks)
