"""Strict parsing of environment variables.

Every setting is read once at start-up. A value that does not parse stops the process with a
message naming the variable, the value and what was expected, instead of surfacing later as an
odd behaviour under load.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured

from inference.backends import is_backend_url
from inference.openai_client import chat_options

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_RATE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Rate:
    """A submission budget such as ``20/m``: ``count`` events per ``seconds``."""

    count: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}s"


def _invalid(name: str, value: str, expected: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{name}={value!r} is invalid: expected {expected}.")


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _invalid(name, raw, "one of 1/0, true/false, yes/no, on/off")


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise _invalid(name, raw, "a whole number") from None
    if minimum is not None and value < minimum:
        raise _invalid(name, raw, f"a whole number of at least {minimum}")
    if maximum is not None and value > maximum:
        raise _invalid(name, raw, f"a whole number of at most {maximum}")
    return value


def env_float(
    name: str, default: float, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise _invalid(name, raw, "a number") from None
    if value != value or (minimum is not None and value < minimum):
        raise _invalid(name, raw, f"a number of at least {minimum}")
    if maximum is not None and value > maximum:
        raise _invalid(name, raw, f"a number of at most {maximum}")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def parse_rate(text: str) -> Rate:
    """Parse ``N/unit`` or ``N/Kunit`` (e.g. ``20/m``, ``100/10s``, ``500/h``)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*", text)
    if not match:
        raise ValueError(text)
    count = int(match.group(1))
    multiplier = int(match.group(2) or 1)
    if count < 1 or multiplier < 1:
        raise ValueError(text)
    return Rate(count=count, seconds=multiplier * _RATE_UNITS[match.group(3)])


def env_rate(name: str, default: str) -> Rate:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return parse_rate(default)
    try:
        return parse_rate(raw)
    except ValueError:
        raise _invalid(name, raw, "a rate like 20/m, 100/10s or 500/h") from None


def env_urls(name: str, default: str = "") -> list[str]:
    urls = env_list(name, default)
    for url in urls:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
            raise _invalid(name, os.environ.get(name, default), "comma-separated http(s):// URLs")
    return [url.rstrip("/") for url in urls]


def env_backend_urls(name: str, default: str = "") -> list[str]:
    """Model backends: http(s) URLs, each optionally prefixed `openai+` for an OpenAI-compatible
    chat server (`openai+http://vllm:8000`), which may carry options (`?grammar=tags`). The
    prefix and the options stay part of the backend's name."""
    urls = env_list(name, default)
    for url in urls:
        if not is_backend_url(url):
            raise _invalid(
                name,
                os.environ.get(name, default),
                "comma-separated http(s):// URLs, each optionally prefixed openai+ "
                "(openai+http://host:port) for an OpenAI-compatible server",
            )
        try:
            chat_options(url)
        except ValueError as exc:
            raw = os.environ.get(name, default)
            raise ImproperlyConfigured(f"{name}={raw!r} is invalid: {url}: {exc}.") from None
    return [url.rstrip("/") for url in urls]


def env_urls_per_backend(name: str, backends: list[str]) -> list[str]:
    """URLs that pair with the backends by position; a single URL serves them all."""
    urls = env_urls(name)
    if len(urls) > 1 and len(urls) != len(backends):
        raise _invalid(
            name,
            os.environ.get(name, ""),
            f"one URL per TGI_URL backend ({len(backends)}), in the same order, or a single URL",
        )
    return urls


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def env_networks(name: str, default: str = "") -> list[Network]:
    """Comma-separated networks (``10.0.0.0/8``) or single addresses; host bits must be zero."""
    raw = os.environ.get(name, default)
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError:
            raise _invalid(
                name, raw, "comma-separated networks like 10.0.0.0/8 or addresses like ::1"
            ) from None
    return networks
