from __future__ import annotations

from django.apps import AppConfig


class PlaygroundConfig(AppConfig):
    name = "playground"
    verbose_name = "Reflection Playground"

    def ready(self) -> None:
        from playground import checks  # noqa: F401  (registers the system checks)
