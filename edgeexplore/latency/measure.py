"""``measure_arch``: build an architecture and time it on a backend, through the cache."""

from __future__ import annotations

from typing import Any

from ..config import ArchConfig, resolve_arch
from ..errors import EdgeExploreError
from . import cache
from .base import BackendUnavailable, LatencyBackend, Measurement
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


def measure_arch(
    cfg: ArchConfig | str,
    backend: str | LatencyBackend = "torch-cpu",
    batch: int = 1,
    threads: int | None = None,
    force: bool = False,
    storage: str | None = None,
    *,
    cache_results: bool = True,
    **settings: Any,
) -> Measurement:
    """Time the network ``cfg`` (an ArchConfig, preset name or JSON path) at batch ``batch``.

    The result is cached in the store (``storage``, default ``$EDGEEXPLORE_STORAGE`` or
    ``edgeexplore.db``) under (architecture hash, input shape, batch, backend, settings, device
    fingerprint); a second call returns the stored :class:`Measurement` (``cached=True``) without
    building the model, unless ``force``. ``settings`` go to the backend (e.g. ``budget_s=0.5``
    for quicker, noisier torch-cpu timing inside a large search).
    """
    b = check_backend(backend, batch=batch, threads=threads, **settings)
    cfg = resolve_arch(cfg)
    if hasattr(b, "storage") and b.storage is None:
        b.storage = storage  # the lut backend keeps its table in the same store
    shape = input_shape_for(cfg, batch)
    use_cache = cache_results and getattr(b, "cacheable", True)
    key = None
    if use_cache:
        key = cache.cache_key(cfg.hash, shape, b.name, dict(getattr(b, "settings", {})),
                              b.describe_device())
        if not force:
            hit = cache.lookup(storage, key)
            if hit is not None:
                return hit
    import torch

    from ..models import build

    torch.manual_seed(0)  # the same weights every time: values can matter (e.g. denormals)
    model = build(cfg).eval()
    m = b.measure(model, shape)
    if not isinstance(m, Measurement):
        raise EdgeExploreError(f"backend {b.name!r} returned {type(m).__name__}, not a Measurement")
    if key is not None:
        cache.store(storage, key, m)
    return m
