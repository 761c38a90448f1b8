"""How often each sample is answered correctly, for the operators' dashboard: correct / total
per sample over the last hour (exact), the last 24 hours (by whole hours) and all time, from the
finished answers in the database, judged by playground.answer_checks.

Whole hours that are over are counted once and kept in Redis (keyed by the checkers' version and
the expected answers, so an edit in the admin recounts); only the current hour is recounted on
each refresh.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from typing import Any

from django.db.models import Min

from inference.samples import SAMPLES
from playground.answer_checks import CHECKERS_VERSION, CORRECT, Checker, checker_for
from playground.models import Message, SamplePrompt
from playground.realtime import redis_clients

HOUR = 3600
# An hour is counted for good only this long after it ended (late commits land first).
SETTLE_SECONDS = 120
SUMMARY_CACHE_SECONDS = 10
_KEY = "pg:ops:accuracy"

Counts = dict[str, list[int]]  # slug -> [correct, total]


def _fingerprint(expected: dict[str, str]) -> str:
    raw = json.dumps([CHECKERS_VERSION, sorted(expected.items())])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _verdicts(start: float, end: float, expected: dict[str, str]) -> list[tuple[str, bool, float]]:
    """(sample, correct?, finished at) of every answer to a sample finished in [start, end)."""
    rows = (
        Message.objects.filter(
            role=Message.Role.ASSISTANT,
            status=Message.Status.DONE,
            finished_at__gte=datetime.fromtimestamp(start, UTC),
            finished_at__lt=datetime.fromtimestamp(end, UTC),
        )
        .exclude(sample_slug="")
        .values_list("sample_slug", "sections", "finished_at")
        .iterator(chunk_size=500)
    )
    checkers: dict[str, tuple[Checker, str] | None] = {}
    result = []
    for slug, sections, finished_at in rows:
        if slug not in checkers:
            checkers[slug] = checker_for(slug, expected.get(slug))
        found = checkers[slug]
        if found is None:
            continue
        output = (sections or {}).get("output") or ""
        correct = bool(output.strip()) and found[0](output).verdict == CORRECT
        result.append((slug, correct, finished_at.timestamp()))
    return result


def _add(into: Counts, slug: str, correct: int, total: int = 1) -> None:
    counts = into.setdefault(slug, [0, 0])
    counts[0] += correct
    counts[1] += total


def _closed_hours(
    first: int, closed_until: int, expected: dict[str, str], client: Any
) -> dict[int, Counts]:
    """Counts of every whole hour in [first, closed_until): from Redis, else counted once."""
    prefix = f"{_KEY}:{_fingerprint(expected)}:"
    hours = list(range(first, closed_until, HOUR))
    stored = client.mget([prefix + str(hour) for hour in hours]) if hours else []
    result = {hour: json.loads(raw) for hour, raw in zip(hours, stored, strict=True) if raw}
    missing = [hour for hour in hours if hour not in result]
    if missing:
        for hour in missing:
            result[hour] = {}
        for slug, correct, finished in _verdicts(missing[0], missing[-1] + HOUR, expected):
            hour = int(finished) // HOUR * HOUR
            if hour in missing:
                _add(result[hour], slug, int(correct))
        pipe = client.pipeline(transaction=False)
        for hour in missing:
            pipe.set(prefix + str(hour), json.dumps(result[hour]), ex=400 * 24 * HOUR)
        pipe.execute()
    return result


def summary(now: float | None = None) -> dict[str, Any]:
    """Correct / total per sample over the last hour, the last 24 hours and all time."""
    client = redis_clients.redis_client()
    summary_key = f"{_KEY}:summary"
    if now is None:
        cached = client.get(summary_key)
        if cached:
            return json.loads(cached)
        now = time.time()
    prompts = list(SamplePrompt.objects.values_list("slug", "title", "expected_answer"))
    expected = {slug: answer for slug, _, answer in prompts}
    titles = {slug: title for slug, title, _ in prompts}
    for sample in SAMPLES:
        titles.setdefault(sample.slug, sample.title)

    first_created = (
        Message.objects.filter(role=Message.Role.ASSISTANT, status=Message.Status.DONE)
        .exclude(sample_slug="")
        .aggregate(first=Min("created"))["first"]
    )
    last_hour: Counts = {}
    last_day: Counts = {}
    all_time: Counts = {}
    if first_created is not None:
        first = int(first_created.timestamp()) // HOUR * HOUR
        closed_until = max(first, int(now - SETTLE_SECONDS) // HOUR * HOUR)
        for hour, counts in _closed_hours(first, closed_until, expected, client).items():
            for slug, (correct, total) in counts.items():
                _add(all_time, slug, correct, total)
                if hour + HOUR > now - 24 * HOUR:
                    _add(last_day, slug, correct, total)
        for slug, correct, finished in _verdicts(min(closed_until, now - HOUR), now + 1, expected):
            if finished >= closed_until:
                _add(all_time, slug, int(correct))
                _add(last_day, slug, int(correct))
            if finished >= now - HOUR:
                _add(last_hour, slug, int(correct))

    def cell(counts: Counts, slug: str) -> dict[str, Any]:
        correct, total = counts.get(slug, [0, 0])
        return {
            "correct": correct,
            "total": total,
            "rate": round(correct / total, 3) if total else None,
        }

    slugs = [slug for slug, _, _ in prompts] + sorted(set(all_time) - set(expected))
    result = {
        "samples": [
            {
                "slug": slug,
                "title": titles.get(slug, slug),
                "expected": (checker_for(slug, expected.get(slug)) or (None, ""))[1],
                "last_hour": cell(last_hour, slug),
                "last_day": cell(last_day, slug),
                "all_time": cell(all_time, slug),
            }
            for slug in slugs
        ],
    }
    client.set(summary_key, json.dumps(result), ex=SUMMARY_CACHE_SECONDS)
    return result
