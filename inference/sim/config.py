"""What shapes the simulator: `SimConfig`, set per run, and the TGI launcher settings it mirrors
as fixed values (they are TGI's defaults for a server like the one simulated)."""

from __future__ import annotations

from dataclasses import dataclass

TGI_VERSION = "3.3.6-dev0"
ROUTER_NAME = "text-generation-router"
MAX_BEST_OF = 2
MAX_STOP_SEQUENCES = 4
MAX_TOP_N_TOKENS = 5
MAX_CLIENT_BATCH_SIZE = 4
VALIDATION_WORKERS = 2
# TGI validates (and reserves KV cache for) at most this many new tokens at a time.
DEFAULT_GENERATION_LENGTH = 1024
PAYLOAD_LIMIT = 2_000_000


@dataclass
class SimConfig:
    """Everything that shapes the simulator's behaviour; `main()` has one flag per field."""

    model_id: str = "reflection-playground/simulator"
    tokens_per_second: float = 40.0
    batch_slowdown: float = 0.03
    prefill_tokens_per_second: float = 4000
    validation_ms: float = 2.0
    stream_end_ms: float = 0.0
    max_concurrent_requests: int = 128
    max_input_tokens: int = 8191
    max_total_tokens: int = 8192
    seed: int | None = None
    stamp_emission_times: bool = False
    split_tags: bool = False
    fault_error_after_tokens: int | None = None
    fault_drop_after_tokens: int | None = None
    fault_slow_start_seconds: float = 0.0
    fault_rate: float = 1.0

    def __post_init__(self) -> None:
        if self.tokens_per_second <= 0 or self.prefill_tokens_per_second <= 0:
            raise ValueError("tokens_per_second and prefill_tokens_per_second must be > 0")
        delays = (self.validation_ms, self.stream_end_ms, self.fault_slow_start_seconds)
        if self.batch_slowdown < 0 or min(delays) < 0:
            raise ValueError(
                "batch_slowdown, validation_ms, stream_end_ms and fault_slow_start_seconds "
                "must be >= 0"
            )
        if self.max_concurrent_requests < 1:
            raise ValueError("max_concurrent_requests must be >= 1")
        if not 0 < self.max_input_tokens < self.max_total_tokens:
            raise ValueError("need 0 < max_input_tokens < max_total_tokens (as TGI's launcher)")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")
        for name in ("fault_error_after_tokens", "fault_drop_after_tokens"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")
