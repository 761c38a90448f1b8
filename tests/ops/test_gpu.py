"""GPU readings: dcgm-exporter text, the simulator's simulated GPUs, where each backend's come
from, and NVML when it is installed."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured

from playground.env import env_urls_per_backend
from playground.ops import gpu
from tests.support.simulator import running_simulator

# What dcgm-exporter 3.x serves for two H100s (abridged to the fields the panel reads, plus one
# it ignores), with the pod labels Kubernetes adds repeated on the first GPU.
DCGM_TEXT = (Path(__file__).resolve().parents[1] / "fixtures" / "dcgm-exporter.txt").read_text()


def test_dcgm_exporter_text_becomes_one_reading_per_gpu() -> None:
    readings = gpu.parse_dcgm(DCGM_TEXT)

    assert [r.gpu for r in readings] == ["0", "1"], "pod-labelled repeats are the same GPU"
    first = readings[0]
    assert first.uuid == "GPU-604ac76c"
    assert first.model == "NVIDIA H100 80GB HBM3"
    assert first.host == "gpu-node-1"
    assert first.utilization == 97
    assert first.temperature_c == 61
    assert first.power_w == 512.25
    assert first.memory_used_mib == 77000
    assert first.memory_total_mib == 77000 + 4000 + 559, "used + free + reserved"
    assert first.simulated is False
    assert readings[1].utilization == 3 and readings[1].power_w == 98.5


def test_a_gpu_without_the_framebuffer_fields_has_no_memory_total() -> None:
    text = 'DCGM_FI_DEV_GPU_UTIL{gpu="3",UUID="GPU-x",modelName="NVIDIA A100"} 50\n'

    (reading,) = gpu.parse_dcgm(text)

    assert reading.gpu == "3" and reading.utilization == 50
    assert reading.memory_used_mib is None and reading.memory_total_mib is None


@pytest.mark.parametrize("text", ["<html><body>502 Bad Gateway</body></html>", "garbage{"])
def test_text_that_is_not_prometheus_is_refused_plainly(text: str) -> None:
    with pytest.raises(gpu.GpuMetricsError):
        gpu.parse_dcgm(text)


def test_the_simulators_gpus_are_marked_simulated() -> None:
    from inference.sim import render_dcgm

    readings = gpu.parse_dcgm(render_dcgm(batch=0))

    assert len(readings) == 2
    assert all(r.simulated for r in readings)
    assert all(r.model == "Simulated GPU" for r in readings)
    assert all(r.utilization == 0 for r in readings), "an idle simulator has idle GPUs"
    assert all(r.memory_total_mib == 81559 for r in readings)


def test_simulated_utilization_follows_the_batch_size() -> None:
    from inference.sim import render_dcgm

    utilization = [gpu.parse_dcgm(render_dcgm(batch))[0].utilization for batch in (0, 1, 4, 16)]

    assert utilization == sorted(utilization) and utilization[0] == 0
    assert utilization[-1] is not None and 90 <= utilization[-1] <= 100


def test_the_simulator_serves_its_gpus_busy_while_it_generates() -> None:
    with running_simulator(tokens_per_second=20) as url:
        idle = gpu.parse_dcgm(httpx.get(f"{url}/dcgm/metrics", timeout=5).text)
        body = {"inputs": "hold the batch", "parameters": {"max_new_tokens": 200}}
        with (
            httpx.Client(timeout=30) as client,
            client.stream("POST", f"{url}/generate_stream", json=body) as response,
        ):
            lines = response.iter_lines()
            next(lines)  # the first token: the request is in the running batch
            busy = gpu.parse_dcgm(httpx.get(f"{url}/dcgm/metrics", timeout=5).text)

    assert idle[0].utilization == 0
    assert busy[0].utilization is not None and busy[0].utilization > 0
    assert busy[0].power_w is not None and idle[0].power_w is not None
    assert busy[0].power_w > idle[0].power_w


# --- where each backend's GPU metrics come from ---------------------------------------------


def test_configured_exporters_pair_with_backends_by_position(settings: Any) -> None:
    settings.TGI_URLS = ["http://gpu1:80", "http://gpu2:80"]
    settings.GPU_METRICS_URLS = ["http://gpu1:9400/metrics", "http://gpu2:9400/metrics"]

    assert gpu.metrics_url_for("http://gpu2:80", None) == ("http://gpu2:9400/metrics", "dcgm")


def test_a_single_exporter_serves_every_backend(settings: Any) -> None:
    settings.TGI_URLS = ["http://gpu1:80", "http://gpu1:81"]
    settings.GPU_METRICS_URLS = ["http://gpu1:9400/metrics"]

    assert gpu.metrics_url_for("http://gpu1:81", None) == ("http://gpu1:9400/metrics", "dcgm")


def test_without_configuration_only_the_simulator_has_gpu_metrics(settings: Any) -> None:
    settings.GPU_METRICS_URLS = []
    sim_info = {"model_id": "reflection-playground/simulator"}
    real_info = {"model_id": "mattshumer/Reflection-Llama-3.1-70B"}

    assert gpu.metrics_url_for("http://sim:8080", sim_info) == (
        "http://sim:8080/dcgm/metrics",
        "simulator",
    )
    assert gpu.metrics_url_for("http://tgi:80", real_info) == (None, "not configured")
    assert gpu.metrics_url_for("http://tgi:80", None) == (None, "not configured")


def test_gpu_metrics_urls_that_do_not_pair_with_the_backends_stop_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GPU_METRICS_URL", "http://a:9400/metrics,http://b:9400/metrics")

    with pytest.raises(ImproperlyConfigured, match="^GPU_METRICS_URL="):
        env_urls_per_backend("GPU_METRICS_URL", ["http://tgi1:80", "http://tgi2:80", "http://x"])
    assert len(env_urls_per_backend("GPU_METRICS_URL", ["http://tgi1:80", "http://tgi2:80"])) == 2


def test_summary_averages_utilization_and_memory_over_gpus() -> None:
    readings = gpu.parse_dcgm(DCGM_TEXT)

    summary = gpu.summary(readings)

    assert summary["utilization"] == 50.0
    assert summary["memory"] == round(100 * 77000 / (2 * 81559), 1)
    assert gpu.summary([]) == {"utilization": None, "memory": None}


# --- NVML ------------------------------------------------------------------------------------


@pytest.fixture
def fresh_nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(gpu, "_nvml_state", {"tried": False, "module": None})
    yield


def test_without_nvidia_ml_py_there_are_no_host_gpus(
    fresh_nvml: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail

    assert gpu.read_nvml() is None


def fake_pynvml() -> SimpleNamespace:
    handle = object()
    return SimpleNamespace(
        NVML_TEMPERATURE_GPU=0,
        nvmlInit=lambda: None,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda index: handle,
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(used=40 * 2**30, total=80 * 2**30),
        nvmlDeviceGetUUID=lambda h: "GPU-local",
        nvmlDeviceGetName=lambda h: b"NVIDIA H100 80GB HBM3",
        nvmlDeviceGetUtilizationRates=lambda h: SimpleNamespace(gpu=42, memory=30),
        nvmlDeviceGetTemperature=lambda h, sensor: 55,
        nvmlDeviceGetPowerUsage=lambda h: 250500,  # milliwatts
    )


def test_nvml_readings_are_converted_to_the_panels_units(
    fresh_nvml: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())

    (reading,) = gpu.read_nvml() or []

    assert reading.model == "NVIDIA H100 80GB HBM3"
    assert reading.utilization == 42
    assert reading.memory_used_mib == 40 * 1024 and reading.memory_total_mib == 80 * 1024
    assert reading.temperature_c == 55
    assert reading.power_w == 250.5
    assert reading.simulated is False
