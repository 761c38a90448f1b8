"""TGI's GenerateRequest: parsed with serde's type rules (the plain-text 422 answers of axum's
JSON extractor) and validated as TGI's `Validation::validate` does, in its order and with its
messages."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .answers import estimate_prompt_tokens
from .config import DEFAULT_GENERATION_LENGTH, MAX_STOP_SEQUENCES, MAX_TOP_N_TOKENS, SimConfig
from .errors import Rejection, validation_error

_DESERIALIZE = "Failed to deserialize the JSON body into the target type"


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    if isinstance(value, list):
        return "sequence"
    return "map"


def _type_error(path: str, value: Any, expected: str) -> Rejection:
    return Rejection(
        422, f"{_DESERIALIZE}: {path}: invalid type: {_describe(value)}, expected {expected}"
    )


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# The integer types of TGI's request parameters, and the values each can hold.
_INTEGER_RANGES = {
    "i32": (-(2**31), 2**31 - 1),
    "u32": (0, 2**32 - 1),
    "u64": (0, 2**64 - 1),
    "usize": (0, 2**64 - 1),
}


def _opt_integer(params: dict[str, Any], name: str, kind: str) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not is_int(value):
        raise _type_error(f"parameters.{name}", value, kind)
    low, high = _INTEGER_RANGES[kind]
    if not low <= value <= high:
        raise Rejection(
            422,
            f"{_DESERIALIZE}: parameters.{name}: invalid value: integer `{value}`, expected {kind}",
        )
    return value


def _opt_float(params: dict[str, Any], name: str) -> float | None:
    value = params.get(name)
    if value is None:
        return None
    if not is_number(value):
        raise _type_error(f"parameters.{name}", value, "f32")
    return float(value)


def _flag(params: dict[str, Any], name: str, default: bool) -> bool:
    if name not in params:
        return default
    value = params[name]
    if not isinstance(value, bool):
        raise _type_error(f"parameters.{name}", value, "a boolean")
    return value


@dataclass
class GenerateRequest:
    """A parsed GenerateRequest; fields mirror TGI's GenerateParameters."""

    inputs: str
    stream: bool = False
    best_of: int | None = None
    temperature: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    typical_p: float | None = None
    do_sample: bool = False
    max_new_tokens: int | None = None
    return_full_text: bool | None = None
    stop: list[str] = field(default_factory=list)
    truncate: int | None = None
    watermark: bool = False
    details: bool = False
    decoder_input_details: bool = False
    seed: int | None = None
    top_n_tokens: int | None = None

    @property
    def sampling(self) -> bool:
        # TGI samples when asked to, or when any logits warper is active.
        return (
            self.do_sample
            or self.watermark
            or (self.temperature is not None and self.temperature != 1.0)
            or bool(self.top_k)
            or (self.top_p is not None and self.top_p < 1.0)
            or (self.typical_p is not None and self.typical_p < 1.0)
        )


def parse_generate_request(body: Any, *, compat: bool) -> GenerateRequest:
    """Apply serde's rules for GenerateRequest (CompatGenerateRequest when `compat`)."""
    if not isinstance(body, dict):
        target = "CompatGenerateRequest" if compat else "GenerateRequest"
        raise Rejection(
            422, f"{_DESERIALIZE}: invalid type: {_describe(body)}, expected struct {target}"
        )
    if "inputs" not in body:
        raise Rejection(422, f"{_DESERIALIZE}: missing field `inputs`")
    inputs = body["inputs"]
    if not isinstance(inputs, str):
        raise _type_error("inputs", inputs, "a string")
    stream = False
    if compat and "stream" in body:
        stream = body["stream"]
        if not isinstance(stream, bool):
            raise _type_error("stream", stream, "a boolean")
    if "parameters" not in body:
        # TGI's default_parameters(): the one place where do_sample defaults to true.
        return GenerateRequest(inputs=inputs, stream=stream, do_sample=True)
    params = body["parameters"]
    if not isinstance(params, dict):
        raise _type_error("parameters", params, "struct GenerateParameters")
    stop = params.get("stop", [])
    if not isinstance(stop, list):
        raise _type_error("parameters.stop", stop, "a sequence")
    for item in stop:
        if not isinstance(item, str):
            raise _type_error("parameters.stop", item, "a string")
    return_full_text = params.get("return_full_text")
    if return_full_text is not None and not isinstance(return_full_text, bool):
        raise _type_error("parameters.return_full_text", return_full_text, "a boolean")
    adapter_id = params.get("adapter_id")
    if adapter_id is not None and not isinstance(adapter_id, str):
        raise _type_error("parameters.adapter_id", adapter_id, "a string")
    grammar = params.get("grammar")
    if grammar is not None and not (isinstance(grammar, dict) and "type" in grammar):
        raise Rejection(
            422, f"{_DESERIALIZE}: parameters.grammar: expected internally tagged enum GrammarType"
        )
    return GenerateRequest(
        inputs=inputs,
        stream=stream,
        best_of=_opt_integer(params, "best_of", "usize"),
        temperature=_opt_float(params, "temperature"),
        repetition_penalty=_opt_float(params, "repetition_penalty"),
        frequency_penalty=_opt_float(params, "frequency_penalty"),
        top_k=_opt_integer(params, "top_k", "i32"),
        top_p=_opt_float(params, "top_p"),
        typical_p=_opt_float(params, "typical_p"),
        do_sample=_flag(params, "do_sample", False),
        max_new_tokens=_opt_integer(params, "max_new_tokens", "u32"),
        return_full_text=return_full_text,
        stop=stop,
        truncate=_opt_integer(params, "truncate", "usize"),
        watermark=_flag(params, "watermark", False),
        details=_flag(params, "details", False),
        decoder_input_details=_flag(params, "decoder_input_details", False),
        seed=_opt_integer(params, "seed", "u64"),
        top_n_tokens=_opt_integer(params, "top_n_tokens", "u32"),
    )


@dataclass(frozen=True)
class _Validated:
    input_length: int
    max_new_tokens: int  # the whole budget (TGI re-queues every 1024 tokens; one stream to us)
    chunk: int  # min(max_new_tokens, 1024): what TGI validates and reserves per turn


def validate_request(req: GenerateRequest, config: SimConfig) -> _Validated:
    """TGI's Validation::validate, in its order, with its messages."""
    best_of = req.best_of if req.best_of is not None else 1
    sampling_asked = req.do_sample or any(
        v is not None for v in (req.temperature, req.top_k, req.top_p, req.typical_p)
    )
    if best_of > 1 and not sampling_asked:
        raise validation_error("you must use sampling when `best_of` is > 1")
    if (req.temperature if req.temperature is not None else 1.0) <= 0.0:
        raise validation_error("`temperature` must be strictly positive")
    if (req.repetition_penalty if req.repetition_penalty is not None else 1.0) <= 0.0:
        raise validation_error("`repetition_penalty` must be strictly positive")
    if not -2.0 <= (req.frequency_penalty or 0.0) <= 2.0:
        raise validation_error("`frequency_penalty` must be >= -2.0 and <= 2.0")
    if req.top_p is not None and not 0.0 < req.top_p < 1.0:
        raise validation_error("`top_p` must be > 0.0 and < 1.0")
    if req.typical_p is not None and not 0.0 < req.typical_p < 1.0:
        raise validation_error("`typical_p` must be > 0.0 and < 1.0")
    if req.top_k is not None and req.top_k <= 0:
        raise validation_error("`top_k` must be strictly positive")
    if req.max_new_tokens == 0:
        raise validation_error("`max_new_tokens` must be strictly positive")
    if len(req.stop) > MAX_STOP_SEQUENCES:
        raise validation_error(
            f"`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences. Given: {len(req.stop)}"
        )
    if req.seed is not None and best_of > 1:
        raise validation_error("`seed` must not be set when `best_of` > 1")
    if req.top_n_tokens is not None and req.top_n_tokens > MAX_TOP_N_TOKENS:
        raise validation_error(
            f"`top_n_tokens` must be >= 0 and <= {MAX_TOP_N_TOKENS}. Given: {req.top_n_tokens}"
        )
    if not req.inputs:
        raise validation_error("`inputs` cannot be empty")
    if req.truncate is not None and not 0 < req.truncate <= config.max_input_tokens:
        raise validation_error(
            "`truncate` must be strictly positive and less than "
            f"{config.max_input_tokens}. Given: {req.truncate}"
        )
    input_length = estimate_prompt_tokens(req.inputs)
    if req.truncate is not None:
        input_length = min(input_length, req.truncate)
    if req.max_new_tokens is not None:
        budget = req.max_new_tokens
    else:
        budget = max(config.max_total_tokens - input_length, 0)
    chunk = min(budget, DEFAULT_GENERATION_LENGTH)
    if input_length + chunk > config.max_total_tokens:
        raise validation_error(
            f"`inputs` tokens + `max_new_tokens` must be <= {config.max_total_tokens}. "
            f"Given: {input_length} `inputs` tokens and {chunk} `max_new_tokens`"
        )
    if input_length > config.max_input_tokens:
        raise validation_error(
            f"`inputs` must have less than {config.max_input_tokens} tokens. Given: {input_length}"
        )
    return _Validated(input_length=input_length, max_new_tokens=budget, chunk=chunk)
