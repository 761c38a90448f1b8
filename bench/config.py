"""One run's settings: the rushes the benchmark knows by name, the targets each is judged
by, and what the command line chose.

- default: 96 visitors at once with minute-long answers on 16 slots, the steady state of a
  busy day: the stack must stay within a few percent of its floor.
- quick: a smoke run of the same, 24 visitors on 4 slots.
- launch: a thousand visitors in the same second, each with a short answer (20 tokens at 50
  tokens/s after 0.1 s to the first token): here the line, the submissions and the fan-out of
  places in line are the work, not the backend.
- viral: one visitor asks, a thousand strangers open the share link at once and watch the
  answer stream; the floor is one reader straight from the simulator.
- waiting: a thousand visitors wait in line with their streams open behind one slow answer:
  what one waiting visitor costs the web process (no floor: a backend holds no line).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench import floor
from deploy.asgi_server import UVICORN_WS_IMPLEMENTATIONS


@dataclass(frozen=True)
class Targets:
    wall_ratio: float = 1.05
    ttfd_ratio: float = 1.05
    idle_extra_ms: float = 30.0
    delay_p50_ms: float | None = 5.0
    delay_p99_ms: float = 100.0
    post_p99_s: float | None = None
    eta_error: float = 0.25


@dataclass(frozen=True)
class Profile:
    name: str
    visitors: int
    slots: int
    tokens_per_second: float
    # The stack's MAX_NEW_TOKENS (and the floor's): None keeps the setting's default, so the
    # scripted answers end where their script does.
    max_new_tokens: int | None = None
    # Added before every answer's first token, the time a real model spends on prefill.
    first_token_seconds: float = 0.0
    # viral: one owner asks, and the visitors are strangers who open its share link.
    share_link: bool = False
    targets: Targets = Targets()
    # The sample the viral owner asks: the longest, so that most of it streams to everyone.
    share_sample: str = "weissensee"
    # waiting: the visitors stay in line with their streams open, and their memory is read.
    hold_line: bool = False


PROFILES = {
    "default": Profile("default", visitors=96, slots=16, tokens_per_second=40.0),
    "quick": Profile("quick", visitors=24, slots=4, tokens_per_second=40.0),
    "launch": Profile(
        "launch",
        visitors=1000,
        slots=16,
        tokens_per_second=50.0,
        max_new_tokens=20,
        first_token_seconds=0.1,
        targets=Targets(
            wall_ratio=1.10,
            ttfd_ratio=1.10,
            delay_p50_ms=None,
            delay_p99_ms=250.0,
            post_p99_s=2.0,
        ),
    ),
    "viral": Profile(
        "viral",
        visitors=1000,
        slots=16,
        tokens_per_second=50.0,
        first_token_seconds=0.1,
        share_link=True,
    ),
    # One slot, at a pace that keeps the first answer running for minutes: everyone else waits.
    "waiting": Profile("waiting", visitors=1000, slots=1, tokens_per_second=0.5, hold_line=True),
}

# The waiting profile's target: 5,000 waiting visitors in 1 GB of web process (issue 17).
WAITING_KIB_TARGET = 100.0


def viral_delay_p99_ms(tokens_per_second: float) -> float:
    """The viral target: every viewer within a second at 50 tokens/s, and within 250 ms at a
    pace (20 tokens/s and slower) where each frame carries a token or two."""
    return 250.0 if tokens_per_second <= 20 else 1000.0


# Generous upper bounds, only used to tell a stuck visitor from a slow one.
LONGEST_ANSWER_TOKENS = 1000
BATCH_SLOWDOWN = 0.03  # the simulator's default, which the benchmark does not change


@dataclass(frozen=True)
class Config:
    profile: Profile
    visitors: int
    slots: int
    tokens_per_second: float
    out: Path
    idle_repeats: int
    prime: bool
    seed: int
    keep_data: bool = False
    worker_processes: int = 2
    web_processes: int | None = None
    asgi_server: str = "uvicorn"
    uvicorn_ws: str = UVICORN_WS_IMPLEMENTATIONS[0]
    database_url: str | None = None
    redis_monitor: bool = False

    @property
    def sim_args(self) -> list[str]:
        args = [
            "--port", "0",
            "--stamp-emission-times",
            "--tokens-per-second", f"{self.tokens_per_second:g}",
            "--max-concurrent-requests", "128",
            "--seed", str(self.seed),
        ]  # fmt: skip
        if self.profile.first_token_seconds:
            # Every request (the fault rate is 1): a prefill the scripted answers lack.
            args += ["--fault-slow-start-seconds", f"{self.profile.first_token_seconds:g}"]
        return args

    @property
    def max_new_tokens(self) -> int:
        return self.profile.max_new_tokens or floor.DEFAULT_MAX_NEW_TOKENS

    @property
    def visitor_timeout(self) -> float:
        step = (1 / self.tokens_per_second) * (1 + BATCH_SLOWDOWN * (self.slots - 1))
        waves = -(-self.visitors // self.slots)
        return 3 * waves * LONGEST_ANSWER_TOKENS * step + 60
