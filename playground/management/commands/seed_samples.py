"""Load the sample prompts (inference.samples) into the database; safe to run repeatedly."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from inference.samples import SAMPLES
from playground.models import SamplePrompt


class Command(BaseCommand):
    help = "Create or update the sample prompts shown on the playground."

    def handle(self, *args: Any, **options: Any) -> None:
        for position, sample in enumerate(SAMPLES):
            _, created = SamplePrompt.objects.update_or_create(
                slug=sample.slug,
                defaults={
                    "title": sample.title,
                    "prompt": sample.prompt,
                    "expected_answer": sample.expected,
                    "position": position,
                },
            )
            if options["verbosity"] >= 1:
                self.stdout.write(f"{'created' if created else 'updated'} {sample.slug}")
