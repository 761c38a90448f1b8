"""Metrics in Prometheus text format, written by hand (the package docstring says why): TGI's
request metrics as metrics-exporter-prometheus renders them, and simulated GPUs as NVIDIA's
dcgm-exporter reports them."""

from __future__ import annotations

import bisect
import math

from .config import SimConfig


def _duration_buckets() -> list[float]:
    # Computed the way TGI's router does, so the `le` labels match to the last digit.
    buckets = []
    value = 0.0001
    for _ in range(35):
        value *= 1.5
        buckets.append(value)
    return buckets


def _linear_buckets(maximum: int) -> list[float]:
    return [maximum / 100.0 * n for n in range(1, 101)]


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Histogram:
    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.bounds, value)  # the first bucket with value <= le
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += value
        self.count += 1

    def render(self, name: str) -> list[str]:
        lines = []
        cumulative = 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            cumulative += n
            lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {cumulative}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{name}_sum {_number(self.total)}")
        lines.append(f"{name}_count {self.count}")
        return lines


class Metrics:
    """TGI's request metrics. Like TGI's exporter, a series appears only once it is recorded."""

    def __init__(self, config: SimConfig) -> None:
        self._counters: dict[tuple[str, str], int] = {}
        self._histograms: dict[str, _Histogram] = {}
        duration = _duration_buckets()
        self._buckets = {
            "tgi_request_duration": duration,
            "tgi_request_validation_duration": duration,
            "tgi_request_queue_duration": duration,
            "tgi_request_inference_duration": duration,
            "tgi_request_mean_time_per_token_duration": duration,
            "tgi_request_input_length": _linear_buckets(config.max_input_tokens),
            "tgi_request_generated_tokens": _linear_buckets(config.max_total_tokens),
            "tgi_request_max_new_tokens": _linear_buckets(config.max_total_tokens),
        }

    def inc(self, name: str, labels: str = "") -> None:
        key = (name, labels)
        self._counters[key] = self._counters.get(key, 0) + 1

    def failure(self, err: str) -> None:
        self.inc("tgi_request_failure", f'err="{err}"')

    def observe(self, name: str, value: float) -> None:
        histogram = self._histograms.get(name)
        if histogram is None:
            histogram = self._histograms[name] = _Histogram(self._buckets[name])
        histogram.observe(value)

    def render(self, gauges: dict[str, float]) -> str:
        lines: list[str] = []
        for name in sorted({name for name, _ in self._counters}):
            lines.append(f"# TYPE {name} counter")
            for (counter, labels), value in sorted(self._counters.items()):
                if counter == name:
                    series = f"{name}{{{labels}}}" if labels else name
                    lines.append(f"{series} {value}")
            lines.append("")
        for name, value in sorted(gauges.items()):
            lines += [f"# TYPE {name} gauge", f"{name} {_number(value)}", ""]
        for name in sorted(self._histograms):
            lines.append(f"# TYPE {name} histogram")
            lines += self._histograms[name].render(name)
            lines.append("")
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Simulated GPUs, as NVIDIA's dcgm-exporter reports them (an extension: `GET /dcgm/metrics`)

SIM_GPUS = 2  # a 70B model in bf16 needs two 80 GB GPUs (tensor parallel)
SIM_GPU_MEMORY_MIB = 81559
# TGI reserves its KV cache at start-up, so memory use is high and nearly flat under load.
SIM_GPU_RESERVED_MIB = 75200
_DCGM_HELP = {
    "DCGM_FI_DEV_GPU_UTIL": ("GPU utilization (in %).", "gauge"),
    "DCGM_FI_DEV_FB_USED": ("Framebuffer memory used (in MiB).", "gauge"),
    "DCGM_FI_DEV_FB_FREE": ("Framebuffer memory free (in MiB).", "gauge"),
    "DCGM_FI_DEV_GPU_TEMP": ("GPU temperature (in C).", "gauge"),
    "DCGM_FI_DEV_POWER_USAGE": ("Power draw (in W).", "gauge"),
}


def render_dcgm(batch: int) -> str:
    """Utilization saturates with the batch (every step keeps the GPUs busy); temperature and
    power follow utilization. The model name says "Simulated" so dashboards can tell."""
    util = round(100 * (1 - math.exp(-batch / 4)))
    used = SIM_GPU_RESERVED_MIB + 24 * batch
    values = {
        "DCGM_FI_DEV_GPU_UTIL": util,
        "DCGM_FI_DEV_FB_USED": used,
        "DCGM_FI_DEV_FB_FREE": SIM_GPU_MEMORY_MIB - used,
        "DCGM_FI_DEV_GPU_TEMP": round(34 + 0.45 * util),
        "DCGM_FI_DEV_POWER_USAGE": round(85 + 5.9 * util, 3),
    }
    lines = []
    for name, value in values.items():
        help_text, kind = _DCGM_HELP[name]
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for gpu in range(SIM_GPUS):
            labels = (
                f'gpu="{gpu}",UUID="GPU-5e1a0000-0000-4000-8000-00000000000{gpu}",'
                f'pci_bus_id="00000000:{0x18 + gpu:02X}:00.0",device="nvidia{gpu}",'
                'modelName="Simulated GPU",Hostname="simulator"'
            )
            lines.append(f"{name}{{{labels}}} {_number(value)}")
    return "\n".join(lines) + "\n"
