"""The benchmark's named rushes: what each asks of the stack and how the viral run is judged
(no processes: the figures are built from hand-made visits)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import floor, viral, waiting
from bench.cli import parse_args
from bench.config import WAITING_KIB_TARGET
from bench.processes import make_stack
from bench.visitors import StackVisit


def test_the_launch_profile_is_a_thousand_short_answers_after_a_prefill() -> None:
    config = parse_args(["--profile", "launch"])

    assert (config.visitors, config.slots, config.tokens_per_second) == (1000, 16, 50.0)
    assert config.max_new_tokens == 20
    assert config.sim_args[-2:] == ["--fault-slow-start-seconds", "0.1"]
    assert config.profile.targets.post_p99_s == 2.0


def test_the_default_profile_keeps_the_answers_whole_and_adds_no_prefill() -> None:
    config = parse_args([])

    assert (config.visitors, config.slots) == (96, 16)
    assert config.max_new_tokens == floor.DEFAULT_MAX_NEW_TOKENS
    assert "--fault-slow-start-seconds" not in config.sim_args


def test_numbers_on_the_command_line_override_the_profiles_own() -> None:
    config = parse_args(["--profile", "viral", "--visitors", "50", "--tokens-per-second", "20"])

    assert config.profile.share_link
    assert (config.visitors, config.tokens_per_second) == (50, 20.0)


def test_the_quick_flag_still_chooses_the_quick_profile() -> None:
    assert parse_args(["--quick"]).profile.name == "quick"


def test_an_unknown_profile_is_refused_by_the_command_line() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--profile", "stampede"])


def test_the_stack_under_measure_runs_the_asgi_server_the_command_line_names(
    tmp_path: Path,
) -> None:
    default = parse_args([])
    chosen = parse_args(["--asgi-server", "daphne"])

    stack = make_stack("http://127.0.0.1:1", 4, tmp_path, tmp_path, None, chosen.asgi_server)

    assert default.asgi_server == "uvicorn"
    assert stack.asgi_server == "daphne"
    with pytest.raises(SystemExit):
        parse_args(["--asgi-server", "hypercorn"])


def viewer(index: int, *, seq_errors: int = 0, whole: bool = True) -> StackVisit:
    visit = StackVisit(index=index, slug="sheep", ws_opened_at=100.5)
    visit.final_type = "done"
    visit.stored_status = "done"
    visit.sections_ok = whole
    visit.seq_errors = seq_errors
    visit.live_delays = [0.010, 0.020, 0.030]
    visit.delays = [2.0, *visit.live_delays]
    return visit


def judged(run: viral.ViralRun, tokens_per_second: float = 50.0) -> dict[str, bool | None]:
    reader = floor.FloorVisit(index=0, slug="sheep", delays=[0.001, 0.002])
    found = viral.figures(run, reader, tokens_per_second, peak_in_flight=1)
    return {figure.key: figure.passed for figure in found}


def test_a_viral_run_where_every_viewer_got_everything_in_time_passes() -> None:
    run = viral.ViralRun(
        owner=viewer(0), viewers=[viewer(1), viewer(2)], shared_at=100.0, end=110.0
    )

    assert judged(run) == {
        "viewers_incomplete": True,
        "viewer_seq_errors": True,
        "viewer_delay_p50_ms": None,
        "viewer_delay_p99_ms": True,
        "viewer_delay_all_p99_ms": None,
        "owner_delay_p99_ms": None,
        "viewer_open_p50_s": None,
        "viewer_open_max_s": None,
        "backend_peak_in_flight": None,
    }


def test_a_viewer_missing_text_or_order_fails_the_viral_run() -> None:
    run = viral.ViralRun(
        owner=viewer(0),
        viewers=[viewer(1, whole=False), viewer(2, seq_errors=2)],
        shared_at=100.0,
        end=110.0,
    )

    verdicts = judged(run)

    assert verdicts["viewers_incomplete"] is False
    assert verdicts["viewer_seq_errors"] is False


def test_the_viral_delay_target_tightens_at_a_pace_of_few_tokens_per_frame() -> None:
    slow = viewer(1)
    slow.live_delays = [0.3] * 10
    run = viral.ViralRun(owner=viewer(0), viewers=[slow], shared_at=100.0, end=110.0)

    assert judged(run, tokens_per_second=50.0)["viewer_delay_p99_ms"] is True
    assert judged(run, tokens_per_second=20.0)["viewer_delay_p99_ms"] is False


def waiting_run(web_after_kib: int, told: int = 999) -> waiting.WaitingRun:
    return waiting.WaitingRun(
        visitors=1000,
        asked=1000,
        told_a_place=told,
        before_kib={"web": 80_000, "worker": 300_000},
        waiting_kib={"web": web_after_kib, "worker": 310_000},
    )


def test_a_waiting_visitor_costs_the_growth_divided_by_those_waiting() -> None:
    assert waiting.growth_per_visitor(80_000, 180_000, 1000) == 100.0
    assert waiting.growth_per_visitor(None, 180_000, 1000) is None
    assert waiting.growth_per_visitor(80_000, 180_000, 0) is None
    found = {f.key: f for f in waiting.figures(waiting_run(80_000 + 999 * 60))}
    assert found["web_kib_per_waiting"].stack == 60.0
    assert found["web_kib_per_waiting"].passed is True
    assert found["kib_per_waiting"].stack == pytest.approx((999 * 60 + 10_000) / 999)
    assert found["told_a_place"].passed is True


def test_the_waiting_profile_fails_past_its_memory_target_or_with_visitors_untold() -> None:
    over = {f.key: f for f in waiting.figures(waiting_run(80_000 + 999 * 150))}
    assert over["web_kib_per_waiting"].stack > WAITING_KIB_TARGET
    assert over["web_kib_per_waiting"].passed is False
    untold = {f.key: f for f in waiting.figures(waiting_run(90_000, told=900))}
    assert untold["told_a_place"].passed is False


def test_the_waiting_profile_keeps_one_slot_busy_behind_a_crawling_answer() -> None:
    config = parse_args(["--profile", "waiting"])
    assert config.profile.hold_line
    assert (config.visitors, config.slots) == (1000, 1)
    # The first answer must outlast the run: the shortest sample at this pace takes minutes.
    assert config.tokens_per_second <= 1.0
