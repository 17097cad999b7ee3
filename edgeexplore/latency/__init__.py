"""Pluggable device-timing backends with trustworthy statistics, energy, and a cache.

Public API::

    from edgeexplore.latency import get_backend, list_backends, measure_arch

    m = measure_arch("edgevit_xxs", backend="torch-cpu", threads=1)   # cached in the store
    m.median_ms, m.p90_ms, m.cv, m.samples_ms, m.energy_j

    b = get_backend("onnxruntime", threads=2, budget_s=3.0)
    b.available()                    # (True, "AMD EPYC, onnxruntime 1.x CPU") or (False, why)
    b.measure(model, (1, 3, 224, 224))

Backends: ``torch-cpu``, ``torchscript``, ``torch-compile``, ``onnxruntime``, ``cuda``,
``command``, ``lut``, plus any registered under the ``edgeexplore.latency_backends`` entry-point
group (see docs/latency.md).
"""

from __future__ import annotations

from .base import (
    BackendUnavailable,
    LatencyBackend,
    Measurement,
    SamplingPolicy,
    Stats,
    StoreBackend,
    device_fingerprint,
    sample_loop,
)
from .measure import check_backend, input_shape_for, measure_arch
from .registry import GROUP, BackendInfo, backend_names, get_backend, list_backends

__all__ = [
    "GROUP",
    "BackendInfo",
    "BackendUnavailable",
    "LatencyBackend",
    "Measurement",
    "SamplingPolicy",
    "Stats",
    "StoreBackend",
    "backend_names",
    "check_backend",
    "device_fingerprint",
    "get_backend",
    "input_shape_for",
    "list_backends",
    "measure_arch",
    "sample_loop",
]
