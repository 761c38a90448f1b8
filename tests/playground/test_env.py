"""Strict parsing of the environment (playground/env.py): bad values stop start-up."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from playground.env import (
    Rate,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_rate,
    env_str,
    env_urls,
    parse_rate,
)

ROOT = Path(__file__).resolve().parents[2]
VAR = "PLAYGROUND_TEST_VALUE"


@pytest.fixture(autouse=True)
def unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VAR, raising=False)


def raises_naming(
    name: str, value: str
) -> AbstractContextManager[pytest.ExceptionInfo[ImproperlyConfigured]]:
    """Expect a refusal that starts by naming the variable and the value it had."""
    pattern = "^" + re.escape(f"{name}={value!r} is invalid: expected ")
    return pytest.raises(ImproperlyConfigured, match=pattern)


# --- strings and lists ------------------------------------------------------------------------


def test_env_str_strips_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_str(VAR, "fallback") == "fallback"
    monkeypatch.setenv(VAR, "  value \n")
    assert env_str(VAR, "fallback") == "value"


def test_env_list_splits_on_commas_and_drops_blanks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_list(VAR, "a,b") == ["a", "b"]
    assert env_list(VAR) == []
    monkeypatch.setenv(VAR, " one , two,,three , ")
    assert env_list(VAR, "ignored") == ["one", "two", "three"]


# --- booleans ---------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "Yes", " on "])
def test_env_bool_accepts_true_spellings(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(VAR, raw)
    assert env_bool(VAR, False) is True


@pytest.mark.parametrize("raw", ["0", "false", "No", "OFF", ""])
def test_env_bool_accepts_false_spellings(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(VAR, raw)
    assert env_bool(VAR, True) is False


def test_env_bool_defaults_when_unset() -> None:
    assert env_bool(VAR, True) is True
    assert env_bool(VAR) is False


@pytest.mark.parametrize("raw", ["maybe", "2", "yess", "t"])
def test_env_bool_rejects_anything_else(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(VAR, raw)
    with raises_naming(VAR, raw):
        env_bool(VAR)


# --- integers ---------------------------------------------------------------------------------


def test_env_int_parses_whole_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_int(VAR, 16) == 16
    monkeypatch.setenv(VAR, " 32 ")
    assert env_int(VAR, 16, minimum=1, maximum=1024) == 32
    monkeypatch.setenv(VAR, "")
    assert env_int(VAR, 16) == 16


def test_env_int_accepts_the_bounds_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, "1")
    assert env_int(VAR, 5, minimum=1, maximum=10) == 1
    monkeypatch.setenv(VAR, "10")
    assert env_int(VAR, 5, minimum=1, maximum=10) == 10


@pytest.mark.parametrize("raw", ["abc", "1.5", "ten", "1e3", "0x10"])
def test_env_int_rejects_non_integers(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(VAR, raw)
    with raises_naming(VAR, raw):
        env_int(VAR, 16)


def test_env_int_rejects_a_value_below_the_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENERATION_CONCURRENCY", "0")
    with pytest.raises(ImproperlyConfigured, match="GENERATION_CONCURRENCY.*at least 1"):
        env_int("GENERATION_CONCURRENCY", 16, minimum=1)


def test_env_int_rejects_a_value_above_the_maximum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENERATION_CONCURRENCY", "5000")
    with pytest.raises(ImproperlyConfigured, match="GENERATION_CONCURRENCY.*at most 1024"):
        env_int("GENERATION_CONCURRENCY", 16, minimum=1, maximum=1024)


def test_env_int_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENERATION_CONCURRENCY", "abc")
    with pytest.raises(ImproperlyConfigured) as caught:
        env_int("GENERATION_CONCURRENCY", 16, minimum=1)
    assert "GENERATION_CONCURRENCY" in str(caught.value)
    assert "'abc'" in str(caught.value)
    assert "whole number" in str(caught.value)


# --- floats -----------------------------------------------------------------------------------


def test_env_float_parses_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_float(VAR, 5.0) == 5.0
    monkeypatch.setenv(VAR, "0.25")
    assert env_float(VAR, 5.0, minimum=0.1, maximum=1.0) == 0.25
    monkeypatch.setenv(VAR, "3")
    assert env_float(VAR, 5.0) == 3.0


@pytest.mark.parametrize("raw", ["fast", "1,5", "nan", "NaN"])
def test_env_float_rejects_non_numbers(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv(VAR, raw)
    with raises_naming(VAR, raw):
        env_float(VAR, 5.0, minimum=0.0)


def test_env_float_enforces_its_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TGI_READ_TIMEOUT", "0.5")
    with pytest.raises(ImproperlyConfigured, match="TGI_READ_TIMEOUT.*at least 1.0"):
        env_float("TGI_READ_TIMEOUT", 120.0, minimum=1.0)
    monkeypatch.setenv("STREAM_FLUSH_INTERVAL", "2")
    with pytest.raises(ImproperlyConfigured, match="STREAM_FLUSH_INTERVAL.*at most 1.0"):
        env_float("STREAM_FLUSH_INTERVAL", 0.02, minimum=0.0, maximum=1.0)


# --- rates ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("20/m", Rate(20, 60)),
        ("100/10s", Rate(100, 10)),
        ("500/h", Rate(500, 3600)),
        ("1/d", Rate(1, 86400)),
        (" 5 / 2m ", Rate(5, 120)),
    ],
)
def test_parse_rate_reads_count_and_period(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["20/week", "20", "/m", "0/m", "20/0s", "-1/m", "20/m/s", ""])
def test_parse_rate_rejects_malformed_rates(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_env_rate_uses_the_default_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_rate(VAR, "20/m") == Rate(20, 60)
    monkeypatch.setenv(VAR, "  ")
    assert env_rate(VAR, "20/m") == Rate(20, 60)
    monkeypatch.setenv(VAR, "3/10s")
    assert env_rate(VAR, "20/m") == Rate(3, 10)


def test_env_rate_rejects_an_unknown_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IP_RATE_LIMIT", "20/week")
    with raises_naming("IP_RATE_LIMIT", "20/week"):
        env_rate("IP_RATE_LIMIT", "20/m")


def test_rate_prints_as_count_per_seconds() -> None:
    assert str(Rate(20, 60)) == "20/60s"


# --- backend URLs -----------------------------------------------------------------------------


def test_env_urls_accepts_http_and_https_and_strips_trailing_slashes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert env_urls(VAR) == []
    monkeypatch.setenv(VAR, "http://tgi-a:8080/, https://tgi-b.example.com/base/ ")
    assert env_urls(VAR) == ["http://tgi-a:8080", "https://tgi-b.example.com/base"]


@pytest.mark.parametrize(
    "raw",
    ["ftp://x", "tgi:8080", "http://", "http:/x", "http://a b", "http://ok:1,ftp://bad"],
)
def test_env_urls_rejects_anything_but_http_urls(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("TGI_URL", raw)
    with raises_naming("TGI_URL", raw):
        env_urls("TGI_URL")


# --- start-up ---------------------------------------------------------------------------------


def _start_django(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "playground.settings", **overrides}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GENERATION_CONCURRENCY", "lots"),
        ("GENERATION_CONCURRENCY", "0"),
        ("IP_RATE_LIMIT", "20/week"),
        ("TGI_URL", "ftp://x"),
        ("DEBUG", "perhaps"),
    ],
)
def test_settings_refuse_a_bad_value_at_start_up(name: str, value: str) -> None:
    result = _start_django(**{name: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"{name}={value!r}" in result.stderr


def test_settings_start_with_good_values() -> None:
    result = _start_django(
        GENERATION_CONCURRENCY="4", IP_RATE_LIMIT="100/10s", TGI_URL="http://tgi:8080"
    )
    assert result.returncode == 0, result.stderr
