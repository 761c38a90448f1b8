"""Sample prompts for the playground, with the answers the simulator plays back for them.

This package is the single source of truth for the samples: the Django side seeds its sample
cards from `SAMPLES` (English) and shows a sample's version in the visitor's language where
there is one (`sample_in`), and the simulator (`inference.sim`) looks a prompt up here, in any
language, to decide what to stream.
"""

from __future__ import annotations

from inference.samples import chinese
from inference.samples.english import SAMPLES
from inference.samples.script import ENGLISH, Sample

__all__ = [
    "ENGLISH",
    "SAMPLES",
    "VERSIONS",
    "Sample",
    "find_sample_by_prompt",
    "get_sample",
    "sample_in",
]

# Every version of every sample, English first.
VERSIONS: tuple[Sample, ...] = SAMPLES + chinese.SAMPLES

_BY_SLUG: dict[str, Sample] = {sample.slug: sample for sample in SAMPLES}
_BY_LANGUAGE: dict[tuple[str, str], Sample] = {
    (sample.slug, sample.language): sample for sample in VERSIONS
}


def _normalise(text: str) -> str:
    return " ".join(text.split())


_BY_PROMPT: dict[str, Sample] = {_normalise(sample.prompt): sample for sample in VERSIONS}


def get_sample(slug: str) -> Sample | None:
    """The sample with this slug (its English version), or None."""
    return _BY_SLUG.get(slug)


def sample_in(language: str, slug: str) -> Sample | None:
    """The sample's version in `language` ("zh-hans"), or None when it has none."""
    return _BY_LANGUAGE.get((slug, language.lower()))


def find_sample_by_prompt(prompt: str) -> Sample | None:
    """The sample version whose prompt equals `prompt` up to whitespace (runs collapsed, ends
    trimmed), in any language."""
    return _BY_PROMPT.get(_normalise(prompt))
