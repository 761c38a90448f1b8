"""The benchmark's pure statistics helpers (no processes, no clocks, no timing assertions)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from bench import monitor, report, stats, timing
from bench.visitors import StackVisit


def test_stamps_are_read_in_order_with_their_decimals() -> None:
    text = "⟦1700000000.123456⟧Hello⟦1700000000.150000⟧ world"
    assert stats.stamps_in(text) == [1700000000.123456, 1700000000.15]
    assert stats.stamps_in("no stamps, but ⟦brackets⟧") == []


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert stats.percentile(values, 0) == 1.0
    assert stats.percentile(values, 100) == 4.0
    assert stats.median(values) == 2.5
    assert stats.percentile(values, 99) == pytest.approx(3.97)
    assert stats.percentile([], 50) is None
    with pytest.raises(ValueError):
        stats.percentile(values, 101)


def test_summarize_handles_empty_and_filled() -> None:
    assert stats.summarize([]) == {
        "n": 0,
        "mean": None,
        "p50": None,
        "p90": None,
        "p99": None,
        "max": None,
    }
    summary = stats.summarize([1.0, 2.0, 3.0])
    assert summary["n"] == 3 and summary["mean"] == 2.0 and summary["max"] == 3.0


def test_ratio_and_difference_refuse_missing_values() -> None:
    assert stats.ratio(10.5, 10.0) == pytest.approx(1.05)
    assert stats.ratio(None, 1.0) is None
    assert stats.ratio(1.0, 0.0) is None
    assert stats.difference(130.0, 100.0) == 30.0
    assert stats.difference(1.0, None) is None


def test_position_rose_ignores_missing_places_and_plateaus() -> None:
    assert not stats.position_rose([5, 5, 4, 4, 1, 0])
    assert not stats.position_rose([None, 3, None, 2])
    assert stats.position_rose([5, 4, 6])
    assert stats.position_rose([3, None, 4])
    assert not stats.position_rose([])


def test_eta_error_only_judges_visitors_who_waited() -> None:
    assert stats.eta_error(12.0, 10.0) == pytest.approx(0.2)
    assert stats.eta_error(8.0, 10.0) == pytest.approx(0.2)
    assert stats.eta_error(0.0, 0.4) is None  # neither told to wait nor waited
    assert stats.eta_error(0.0, 2.0) == pytest.approx(1.0)  # waited though told not to
    assert stats.eta_error(5.0, 0.5) == pytest.approx(9.0)  # told to wait, did not
    assert stats.eta_error(None, 10.0) is None
    assert stats.signed_eta_error(8.0, 10.0) == pytest.approx(-0.2)
    assert stats.signed_eta_error(0.1, 0.2) is None


def test_a_visitors_wait_is_counted_from_the_click_and_from_the_posts_answer() -> None:
    visit = StackVisit(index=0, slug="sheep", submit_at=100.0, post_seconds=12.0)
    visit.started_at, visit.first_delta_at = 130.0, 130.5

    assert visit.actual_wait == pytest.approx(30.0)
    assert visit.wait_after_told == pytest.approx(18.0)
    assert StackVisit(index=1, slug="sheep", submit_at=100.0).wait_after_told is None


def test_peak_concurrent_and_open_at() -> None:
    intervals: list[tuple[float, float | None]] = [(0.0, 10.0), (1.0, 2.0), (2.0, 3.0)]
    # (1, 2) closes as (2, 3) opens: they never overlap.
    assert stats.peak_concurrent(intervals) == 2
    intervals += [(5.0, None), (5.5, 6.0)]
    assert stats.peak_concurrent(intervals) == 3
    assert stats.open_at(intervals, 2.0) == 2
    assert stats.open_at(intervals, 100.0) == 1
    assert stats.peak_concurrent([]) == 0


def test_sections_rebuilt_from_deltas_match_the_stored_answer() -> None:
    built = stats.empty_sections()
    for delta in (
        {"section": "thinking", "text": "a"},
        {"section": "reflection", "index": 0, "text": "r0"},
        {"section": "thinking", "text": "b"},
        {"section": "reflection", "index": 1, "text": "r1"},
        {"section": "output", "text": "out"},
    ):
        stats.apply_delta(built, delta)
    stored = {"thinking": "ab", "reflections": ["r0", "r1"], "output": "out", "text": ""}
    assert stats.sections_match(built, stored)
    assert not stats.sections_match(built, {**stored, "output": "ou"})
    assert not stats.sections_match(built, None)


def test_a_viewer_goes_on_from_the_sections_the_page_showed() -> None:
    shown = {"thinking": "a", "reflections": ["r0"], "output": "", "text": "", "seq": 2}
    built = stats.sections_from(shown)
    stats.apply_delta(built, {"section": "reflection", "index": 0, "text": "!"})
    stats.apply_delta(built, {"section": "output", "text": "out"})
    assert stats.sections_match(
        built, {"thinking": "a", "reflections": ["r0!"], "output": "out", "text": ""}
    )
    assert shown["reflections"] == ["r0"]  # the page's copy is left as it was
    assert stats.sections_match(stats.sections_from(None), stats.empty_sections())


def test_handoff_gaps_pair_later_starts_with_earlier_finishes() -> None:
    # Two slots: A and B start at once; C takes A's slot 0.1 s after A ends, D takes B's.
    intervals = [(0.0, 5.0), (0.0, 7.0), (5.1, 9.0), (7.3, 10.0)]
    gaps = timing.handoff_gaps(intervals, slots=2)
    assert gaps == pytest.approx([0.1, 0.3])
    assert math.isclose(timing.utilisation([(0.0, 5.0), (0.0, 5.0)], 2, 10.0), 0.5)


def test_table_marks_pass_fail_and_informational_rows() -> None:
    figures = [
        report.Figure("a", "wall", "s", 10.5, 10.0, "ratio", "≤ 1.05 × floor", True),
        report.Figure("b", "idle", "ms", 150.0, 100.0, "diff", "≤ floor + 30 ms", False),
        report.Figure("c", "rss", "MiB", 120.0),
    ]
    text = report.table(figures)
    assert "× 1.050" in text and "+50.0 ms" in text and "PASS" in text and "FAIL" in text
    assert report.verdict(figures) == "targets met: 1/2 — missed: idle"


def test_the_scratch_database_refuses_a_database_url_that_is_not_postgresql() -> None:
    from bench.processes import ScratchDatabase

    with pytest.raises(SystemExit, match="postgres://"):
        ScratchDatabase("sqlite:///tmp/bench.sqlite3")


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="needs a PostgreSQL server in DATABASE_URL (CI has one)",
)
def test_the_scratch_database_is_new_and_empty_and_dropped_afterwards() -> None:
    import psycopg

    from bench.processes import ScratchDatabase

    scratch = ScratchDatabase(os.environ["DATABASE_URL"])
    url = scratch.create()
    try:
        with psycopg.connect(url) as connection:
            tables = connection.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
        assert tables == (0,)
    finally:
        scratch.drop()
    with psycopg.connect(os.environ["DATABASE_URL"]) as connection:
        left = connection.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", [scratch.name]
        ).fetchone()
    assert left == (0,)


TRACE = (
    b'1700000000.100000 [0 127.0.0.1:5000] "set" "pg:dispatch-lock" "x" "NX"\n'
    b'1700000000.150000 [0 127.0.0.1:5002] "set" "pg:dispatch-lock" "y" "NX"\n'
    b'1700000000.200000 [0 127.0.0.1:5000] "del" "pg:dispatch-lock"\n'
    b'1700000000.300000 [0 127.0.0.1:5001] "publish" "asgi__group__msg.abc" '
    b'"\\xe2\\x9f\\xa61700000000.250000\\xe2\\x9f\\xa7hi"\n'
    b'1700000000.350000 [0 127.0.0.1:5001] "publish" "celery-events" "x"\n'
    b"not a command line\n"
    b'1700000005.000000 [0 127.0.0.1:5001] "lpush" "celery" "x"\n'
)


def test_a_redis_monitor_trace_gives_publish_delays_and_lock_contention(tmp_path: Path) -> None:
    trace = tmp_path / "monitor.log"
    trace.write_bytes(TRACE)

    found = monitor.analyze(trace, 1700000000.0, 1700000001.0)

    assert found["publishes"] == 1  # the playground's own group, not Celery's events
    assert found["emission_to_publish_ms"]["p50"] == pytest.approx(50.0, abs=0.01)
    assert found["dispatch_lock"]["acquisitions"] == 1
    assert found["dispatch_lock"]["failed_attempts"] == 1
    assert found["dispatch_lock"]["hold_ms"]["p50"] == pytest.approx(100.0, abs=0.01)
    assert found["list_pushes"] == 0, "outside the window"
    assert monitor.timelines(trace, ["abc"]) == {
        "abc": {
            "first_delta_published": pytest.approx(1700000000.3),
            "first_delta_emitted": pytest.approx(1700000000.25),
        }
    }
