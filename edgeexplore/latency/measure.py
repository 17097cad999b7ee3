"""``measure_arch``: build an architecture and time it on a backend, through the cache."""

from __future__ import annotations

from typing import Any

from ..config import ArchConfig, resolve_arch
from ..errors import EdgeExploreError
from ..store import Store, open_store
from ..store import latency as cache
from .base import (
    BackendUnavailable,
    LatencyBackend,
    Measurement,
    StoreBackend,
    device_fingerprint,
    settings_json,
    shape_str,
)
from .registry import get_backend

#: The largest timed batch: edge latency is measured at small batches, and a typo such as
#: --batch 100000000 asked for 60 TB of input (an allocator traceback).
MAX_BATCH = 4096


def input_shape_for(cfg: ArchConfig, batch: int = 1) -> tuple[int, int, int, int]:
    h, w = cfg.resolution
    return (int(batch), cfg.in_chans, h, w)


def resolve_backend(backend: str | LatencyBackend, threads: int | None = None,
                    **settings: Any) -> LatencyBackend:
    """A backend object from a name (with settings) or the object itself."""
    if isinstance(backend, str):
        return get_backend(backend, threads=threads, **settings)
    if threads is not None or settings:
        raise EdgeExploreError("pass settings to get_backend(), not beside a backend object")
    return backend


def check_backend(backend: str | LatencyBackend, batch: int = 1, threads: int | None = None,
                  **settings: Any) -> LatencyBackend:
    """The backend, once its name, settings and batch are valid and it can run here.

    Callers that train before they time (search, ablate) call this first, so a typo or a
    backend this machine lacks is refused up front, not reported after hours of training.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise EdgeExploreError(f"batch must be a positive integer, not {batch!r}")
    if batch > MAX_BATCH:
        raise EdgeExploreError(f"batch must be at most {MAX_BATCH}, not {batch}")
    b = resolve_backend(backend, threads=threads, **settings)
    ok, why = b.available()
    if not ok:
        raise BackendUnavailable(f"backend {b.name!r} is not available here: {why}")
    return b


def backend_key(backend: LatencyBackend, batch: int = 1) -> dict[str, Any]:
    """What is timed and where, without the architecture: backend, settings, batch and device
    fingerprint (a stored latency predictor's key, and part of every cache key)."""
    return {
        "backend": backend.name, "settings": settings_json(dict(getattr(backend, "settings", {}))),
        "batch": int(batch), "device_fingerprint": device_fingerprint(backend.describe_device()),
    }


def cache_key(arch_hash: str, shape: tuple[int, ...], backend: LatencyBackend) -> dict[str, Any]:
    """The unique columns of ``latency_measurements`` for ``backend`` timing ``arch_hash``."""
    return {"arch_hash": arch_hash, "input_shape": shape_str(shape),
            **backend_key(backend, shape[0])}


def _short_device(device: dict[str, Any]) -> str:
    for key in ("gpu", "device_name", "cpu"):
        if device.get(key):
            return str(device[key])
    return "unknown"


def measure_arch(
    cfg: ArchConfig | str,
    backend: str | LatencyBackend = "torch-cpu",
    batch: int = 1,
    threads: int | None = None,
    force: bool = False,
    store: Store | None = None,
    *,
    cache_results: bool = True,
    **settings: Any,
) -> Measurement:
    """Time the network ``cfg`` (an ArchConfig, preset name or JSON path) at batch ``batch``.

    The result is cached in ``store`` (default: :func:`~edgeexplore.store.open_store` of
    ``$EDGEEXPLORE_STORAGE`` or ``edgeexplore.db``, opened only when needed) under (architecture
    hash, input shape, batch, backend, settings, device fingerprint); a second call returns the stored :class:`Measurement` (``cached=True``) without
    building the model, unless ``force``. ``settings`` go to the backend (e.g. ``budget_s=0.5``
    for quicker, noisier torch-cpu timing inside a large search).
    """
    b = check_backend(backend, batch=batch, threads=threads, **settings)
    cfg = resolve_arch(cfg)
    use_cache = cache_results and getattr(b, "cacheable", True)
    if store is None and (use_cache or isinstance(b, StoreBackend)):
        store = open_store()
    if isinstance(b, StoreBackend):
        b.use_store(store)  # the lut backend keeps its table beside the measurement cache
    shape = input_shape_for(cfg, batch)
    key = None
    if use_cache:
        key = cache_key(cfg.hash, shape, b)
        if not force:
            hit = cache.cached_record(store, key)
            if hit is not None:
                m = Measurement.from_dict(hit)
                m.cached = True
                return m
    import torch

    from ..models import build

    torch.manual_seed(0)  # the same weights every time: values can matter (e.g. denormals)
    model = build(cfg).eval()
    m = b.measure(model, shape)
    if not isinstance(m, Measurement):
        raise EdgeExploreError(f"backend {b.name!r} returned {type(m).__name__}, not a Measurement")
    if key is not None:
        cache.put_record(store, key, {**m.to_dict(), "cached": False}, _short_device(m.device))
    return m
