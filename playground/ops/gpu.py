"""GPU readings for the operators' dashboard: a DCGM exporter's metrics, or NVML on this host.

Production GPUs are watched by NVIDIA's dcgm-exporter, whose /metrics lines look like
``DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-…",modelName="NVIDIA H100 80GB HBM3",Hostname="…"} 87``.
GPU_METRICS_URL names one exporter per backend (in TGI_URL's order, or one for all). Without it,
a backend whose /info says it is the simulator is asked for its simulated exporter at
``/dcgm/metrics``, and readings say they are simulated. When this process itself runs on a GPU
host and the optional ``nvidia-ml-py`` package is installed, NVML readings are shown as well.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

SIMULATOR_GPU_PATH = "/dcgm/metrics"

# DCGM field → our reading's attribute. Framebuffer sizes are MiB, power W, temperature °C.
_FIELDS = {
    "DCGM_FI_DEV_GPU_UTIL": "utilization",
    "DCGM_FI_DEV_FB_USED": "memory_used_mib",
    "DCGM_FI_DEV_FB_FREE": "_fb_free",
    "DCGM_FI_DEV_FB_RESERVED": "_fb_reserved",
    "DCGM_FI_DEV_GPU_TEMP": "temperature_c",
    "DCGM_FI_DEV_POWER_USAGE": "power_w",
}


@dataclass
class GpuReading:
    gpu: str
    uuid: str = ""
    model: str = ""
    host: str = ""
    utilization: float | None = None  # percent
    memory_used_mib: float | None = None
    memory_total_mib: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    simulated: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class GpuMetricsError(ValueError):
    """The text is not Prometheus exposition format."""


def parse_dcgm(text: str) -> list[GpuReading]:
    """One reading per GPU (by UUID, else host and index) from dcgm-exporter's text."""
    raw: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise GpuMetricsError(str(exc)) from exc
    for family in families:
        attribute = _FIELDS.get(family.name)
        if attribute is None:
            continue
        for sample in family.samples:
            labels = sample.labels
            index = labels.get("gpu", labels.get("minor_number", "?"))
            key = (labels.get("Hostname", ""), labels.get("UUID") or index)
            entry = raw.setdefault(
                key,
                {
                    "gpu": index,
                    "uuid": labels.get("UUID", ""),
                    "model": labels.get("modelName", ""),
                    "host": labels.get("Hostname", ""),
                },
            )
            # The exporter may repeat a GPU's series with pod labels; the values are the same.
            entry[attribute] = float(sample.value)
    readings = []
    for entry in raw.values():
        free = entry.pop("_fb_free", None)
        reserved = entry.pop("_fb_reserved", 0.0)
        used = entry.get("memory_used_mib")
        if used is not None and free is not None:
            entry["memory_total_mib"] = used + free + reserved
        entry["simulated"] = "simulated" in entry["model"].lower()
        readings.append(GpuReading(**entry))
    return sorted(readings, key=lambda r: (r.host, _index_order(r.gpu)))


def _index_order(gpu: str) -> tuple[int, str]:
    return (int(gpu), "") if gpu.isdigit() else (1 << 30, gpu)


def metrics_url_for(backend: str, info: dict[str, Any] | None) -> tuple[str | None, str]:
    """(URL of the GPU metrics for a backend, where it comes from)."""
    configured = settings.GPU_METRICS_URLS
    if configured:
        if len(configured) == 1:
            return configured[0], "dcgm"
        try:
            return configured[settings.TGI_URLS.index(backend)], "dcgm"
        except (ValueError, IndexError):
            return None, "not configured"
    model_id = str((info or {}).get("model_id") or "")
    if "simulator" in model_id.lower():
        return backend + SIMULATOR_GPU_PATH, "simulator"
    return None, "not configured"


# --- NVML (optional: `pip install nvidia-ml-py` on a GPU host) ------------------------------

_nvml_state: dict[str, Any] = {"tried": False, "module": None}


def _nvml() -> Any:
    if not _nvml_state["tried"]:
        _nvml_state["tried"] = True
        try:
            import pynvml  # type: ignore[import-not-found]

            pynvml.nvmlInit()
            _nvml_state["module"] = pynvml
        except Exception as exc:  # not installed, no driver, no GPU: simply not available
            log.debug("NVML is not available: %s", exc)
    return _nvml_state["module"]


def _decoded(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_nvml() -> list[GpuReading] | None:
    """This host's GPUs through NVML, or None when NVML is not available here."""
    nvml = _nvml()
    if nvml is None:
        return None
    readings = []
    try:
        host = socket.gethostname()
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            readings.append(
                GpuReading(
                    gpu=str(index),
                    uuid=_decoded(nvml.nvmlDeviceGetUUID(handle)),
                    model=_decoded(nvml.nvmlDeviceGetName(handle)),
                    host=host,
                    utilization=float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
                    memory_used_mib=memory.used / 2**20,
                    memory_total_mib=memory.total / 2**20,
                    temperature_c=float(
                        nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
                    ),
                    power_w=nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
                )
            )
    except Exception as exc:  # a GPU fell off the bus mid-read: show what NVML says
        log.warning("NVML read failed: %s", exc)
        return None
    return readings


def summary(readings: list[GpuReading]) -> dict[str, float | None]:
    """Mean utilization and memory use (percent) across GPUs, for the charts."""
    utils = [r.utilization for r in readings if r.utilization is not None]
    memory = [
        (r.memory_used_mib, r.memory_total_mib)
        for r in readings
        if r.memory_used_mib is not None and r.memory_total_mib
    ]
    total = sum(size for _, size in memory)
    return {
        "utilization": round(sum(utils) / len(utils), 1) if utils else None,
        "memory": round(100 * sum(used for used, _ in memory) / total, 1) if total else None,
    }
