"""How the playground writes a length of time, in both of its forms (static/js/stream/format.js
writes the same on the page, and tests/playground/test_durations.py holds the two to each other).

The units follow the reader's language: "2 min 05 s" is "2 分 05 秒" in Chinese.
"""

from __future__ import annotations

from django.utils.translation import gettext


def _seconds(amount: str) -> str:
    # Translators: a length of time in seconds, abbreviated: "12 s", "0.31 s".
    return gettext("%(seconds)s s") % {"seconds": amount}


def _minutes_seconds(minutes: int, seconds: int) -> str:
    # Translators: minutes and seconds, abbreviated; the seconds always have two digits.
    return gettext("%(minutes)s min %(seconds)s s") % {
        "minutes": minutes,
        "seconds": f"{seconds:02d}",
    }


def format_measured(seconds: float | None) -> str:
    """A measured time, as precise as it is short: 0.31 s, 4.2 s, 12 s, 1 min 05 s."""
    if seconds is None:
        return "–"
    if seconds < 1:
        return _seconds(f"{seconds:.2f}")
    if seconds < 10:
        return _seconds(f"{seconds:.1f}")
    if seconds < 60:
        return _seconds(str(round(seconds)))
    minutes, rest = divmod(round(seconds), 60)
    return _minutes_seconds(minutes, rest)


def format_wait(seconds: float) -> str:
    """An estimated or announced wait, in whole seconds: 45 s, 2 min 05 s, 1 h 5 min."""
    whole = int(round(seconds))
    if whole < 60:
        return _seconds(str(whole))
    minutes, rest = divmod(whole, 60)
    if minutes < 60:
        return _minutes_seconds(minutes, rest)
    # Translators: hours and minutes, abbreviated: "1 h 5 min".
    return gettext("%(hours)s h %(minutes)s min") % {
        "hours": minutes // 60,
        "minutes": minutes % 60,
    }
