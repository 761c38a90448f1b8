"""The dashboard's numbers: latencies with their unit, the same from the server and the page's
script, and chart axes whose ticks are distinct round numbers with units (static/ops/numbers.js,
run under Node)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from playground.ops.units import format_latency, latency_texts

ROOT = Path(__file__).resolve().parents[2]
NUMBERS_JS = (ROOT / "static/ops/numbers.js").as_uri()
CONFIRM_JS = (ROOT / "static/ops/confirm.js").as_uri()
SECONDS = [0.0, 0.0004, 0.0125, 0.082, 0.0825, 0.4995, 0.9994, 0.9996, 1.0, 4.24, 12.4, 65.0]

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")


def run_node(script: str) -> Any:  # noqa: ANN401  (whatever the script printed as JSON)
    written = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TZ": "UTC"},
    ).stdout
    return json.loads(written)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.082, "82 ms"),
        (0.0125, "13 ms"),
        (0.0004, "0 ms"),
        (0.9994, "999 ms"),
        (1.0, "1.0 s"),
        (4.24, "4.2 s"),
        (65, "1 min 05 s"),
        (None, "–"),
    ],
)
def test_a_latency_is_written_in_milliseconds_below_a_second_and_seconds_above(
    seconds: float | None, text: str
) -> None:
    assert format_latency(seconds) == text


def test_every_latency_tile_gets_its_text_with_a_unit() -> None:
    latency = {
        "wait": {"p50": 2.0, "p95": 10.0, "count": 4},
        "ttft": {"p50": 0.082, "p95": None, "count": 1},
    }

    assert latency_texts(latency) == {
        "wait": {"p50": "2.0 s", "p95": "10 s"},
        "ttft": {"p50": "82 ms", "p95": "–"},
    }


@needs_node
def test_the_page_writes_every_latency_as_the_server_does() -> None:
    written = run_node(
        f"import {{ formatLatency }} from {json.dumps(NUMBERS_JS)};\n"
        f"console.log(JSON.stringify({json.dumps(SECONDS)}.map(formatLatency)));\n"
    )

    assert written == [format_latency(s) for s in SECONDS]


AXIS_MAXIMA = [None, 0, 1e-9, 0.0821, 0.082, 0.3, 0.9, 1.2, 3.7, 12, 48, 99.5, 160, 1234]


@pytest.fixture(scope="module")
def axes() -> dict[str, list[dict[str, Any]]]:
    """Each axis kind's ticks and labels for a range of largest values, from numbers.js."""
    if shutil.which("node") is None:
        pytest.skip("Node.js is not installed")
    return run_node(
        f"import {{ AXES }} from {json.dumps(NUMBERS_JS)};\n"
        f"const maxima = {json.dumps(AXIS_MAXIMA)};\n"
        "const result = {};\n"
        "for (const [kind, axis] of Object.entries(AXES)) {\n"
        "  result[kind] = maxima.map((max) => {\n"
        "    const ticks = axis.ticks(max);\n"
        "    return { max, ticks, labels: axis.labels(ticks) };\n"
        "  });\n"
        "}\n"
        "console.log(JSON.stringify(result));\n"
    )


@pytest.mark.parametrize("kind", ["count", "rate", "latency", "percent"])
def test_axis_ticks_are_distinct_evenly_spaced_round_and_cover_the_data(
    kind: str, axes: dict[str, list[dict[str, Any]]]
) -> None:
    for axis in axes[kind]:
        ticks, labels, largest = axis["ticks"], axis["labels"], axis["max"] or 0
        if kind == "percent":
            largest = min(largest, 100)  # a percentage axis is the whole scale, always
        steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
        assert ticks[0] == 0 and ticks[-1] >= largest, axis
        assert 3 <= len(ticks) <= 6 or (kind == "count" and ticks == [0, 1]), axis
        assert len(steps) == 1, f"evenly spaced: {axis}"
        (step,) = steps
        power = 10 ** math.floor(math.log10(step))
        assert any(math.isclose(step / power, m) for m in (1, 2, 2.5, 5)), f"round: {axis}"
        assert len(set(labels)) == len(labels), f"distinct labels: {labels}"


def test_the_first_token_axis_reads_in_milliseconds_with_distinct_labels(
    axes: dict[str, list[dict[str, Any]]],
) -> None:
    by_max = {axis["max"]: axis["labels"] for axis in axes["latency"]}

    assert by_max[0.082] == ["0 ms", "25 ms", "50 ms", "75 ms", "100 ms"]
    assert by_max[0.3] == ["0 ms", "100 ms", "200 ms", "300 ms"]
    assert by_max[1.2] == ["0 s", "0.5 s", "1 s", "1.5 s"]
    assert by_max[12] == ["0 s", "5 s", "10 s", "15 s"]


def test_counts_are_whole_numbers_and_percentages_span_the_whole_scale(
    axes: dict[str, list[dict[str, Any]]],
) -> None:
    for axis in axes["count"]:
        assert all(float(tick).is_integer() for tick in axis["ticks"]), axis
    by_max = {axis["max"]: axis["labels"] for axis in axes["count"]}
    assert by_max[0] == ["0", "1"]
    assert by_max[3.7] == ["0", "1", "2", "3", "4"]
    assert {tuple(axis["labels"]) for axis in axes["percent"]} == {
        ("0 %", "25 %", "50 %", "75 %", "100 %")
    }


@needs_node
def test_the_time_axis_reads_as_a_clock_and_outages_show_as_gaps() -> None:
    result = run_node(
        f"import {{ clockLabel, withGaps }} from {json.dumps(NUMBERS_JS)};\n"
        "const points = [{ t: 100, waiting: 1 }, { t: 105, waiting: 2 }, { t: 200, waiting: 3 }];\n"
        "console.log(JSON.stringify({\n"
        "  minutes: clockLabel(1700000000, 300), seconds: clockLabel(1700000000, 10),\n"
        "  gapped: withGaps(points, 15),\n"
        "}));\n"
    )

    assert result["minutes"] == "22:13" and result["seconds"] == "22:13:20"
    assert result["gapped"] == [
        {"t": 100, "waiting": 1},
        {"t": 105, "waiting": 2},
        {"t": 120},
        {"t": 200, "waiting": 3},
    ]


@needs_node
def test_a_confirmation_names_its_target_from_the_forms_own_fields() -> None:
    question = run_node(
        f"import {{ fillQuestion }} from {json.dumps(CONFIRM_JS)};\n"
        "const fields = new Map([['value', '203.0.113.5'], ['duration', '1h']]);\n"
        "const question = fillQuestion('Block {value} for {duration}? {missing}', fields);\n"
        "console.log(JSON.stringify(question));\n"
    )

    assert question == "Block 203.0.113.5 for 1h? "
