"""Operations: what the operators see and do, and the numbers Prometheus reads.

- views, urls: /ops/ (staff only) and /metrics, thin
- actions: an operator's controls (pause, drain, concurrency, backends, cancel, blocks), each
  checked, applied through playground.controls and audited
- audit: the audit log
- dashboard: the dashboard's data, and the sampler that keeps its last hour for the charts
- gauges: what is true right now (the line, slots, controls, viewers)
- scrape: each backend's health, model info and metrics, and its GPUs, cached briefly
- gpu: DCGM exporter text and NVML readings
- metrics: recording the numbers in Redis (services and the consumer call it; it imports
  neither) and reading their windows
- prometheus: /metrics' access rule and exposition
- accuracy: how often each sample is answered correctly, over time
- units: latencies written as the dashboard's script writes them (static/ops/numbers.js)

The switches admission and dispatch read (pause, drain, concurrency, disabled backends, blocks)
stay in playground/controls.py, below services. Nothing is imported here, so that services may
import ops.metrics without loading the rest.
"""
