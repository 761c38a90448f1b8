"""A length of time reads the same whether the server wrote it or the page's script did."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from playground.durations import format_measured, format_wait

ROOT = Path(__file__).resolve().parents[2]
SECONDS = [0.0, 0.314, 0.999, 4.24, 9.96, 12.4, 59.4, 59.6, 65, 119.5, 3599.4, 3600, 5400, 90061]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(45, "45 s"), (44.6, "45 s"), (125, "2 min 05 s"), (3600, "1 h 0 min"), (3905, "1 h 5 min")],
)
def test_a_wait_is_written_in_whole_seconds_minutes_and_hours(seconds: float, text: str) -> None:
    assert format_wait(seconds) == text


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed here")
def test_the_page_script_writes_every_length_of_time_as_the_server_does() -> None:
    script = (
        f"import {{ formatSeconds, formatEta }} from "
        f"{json.dumps((ROOT / 'static/js/stream/format.js').as_uri())};\n"
        f"const seconds = {json.dumps(SECONDS)};\n"
        "console.log(JSON.stringify(seconds.map((s) => [formatSeconds(s), formatEta(s)])));\n"
    )
    written = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert json.loads(written) == [[format_measured(s), format_wait(s)] for s in SECONDS]
