"""The learned predictor of one device and backend: measure a few, fit, store, predict the rest.

:func:`fit_device` picks the architectures to measure among candidates (diverse in the
predictor's features, not random; ones measured before count first), measures them through the
latency cache, fits :mod:`.predictor` and stores its training set and CV error under the same key
as the measurements (backend, settings, batch, device fingerprint). :func:`load_predictor`
refits from those cached measurements, so nothing but numbers and configs is ever stored.

A predictor's *features* are ``analytic`` (computed from the architecture: nothing is timed but
the training architectures) or ``units``: those plus the architecture's units (stem, blocks,
head) timed one by one on the same backend, kept in the store's unit table and shared with the
``lut`` backend. Unit times see what analytic features cannot (how fast this device runs a
7×7 depthwise conv or a 49-token matmul) and made 90-100% of held-out predictions land within
±10% here, against 70-80% without (``benchmarks/latency_predictor.py``); but every new
architecture then needs its new units timed. ``auto`` takes ``units`` for a backend in this
process and ``analytic`` for a remote one (``command``), where each timing costs a round trip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import ArchConfig
from ..errors import EdgeExploreError
from ..store import Store, open_store
from ..store import latency as tables
from .measure import (
    _short_device,
    backend_key,
    cache_key,
    input_shape_for,
    measure_arch,
    resolve_backend,
)
from .predictor import (
    FEATURE_CHOICES,
    FEATURE_SETS,
    Features,
    FittedPredictor,
    arch_features,
    config_features,
    fit_predictor,
    select_diverse,
    with_units,
)


@dataclass
class UnitTable:
    """The device's unit timings, read and grown through the ``lut`` backend's table."""

    lut: Any  # LUTBackend over the predictor's backend
    batch: int

    def sums(self, cfg: ArchConfig) -> dict[str, float]:
        import torch

        from ..models import build

        torch.manual_seed(0)  # the weights measure_arch times: values can matter (denormals)
        return self.lut.unit_sums(build(cfg).eval(), input_shape_for(cfg, self.batch))


@dataclass
class DevicePredictor:
    """A predictor fitted on ``archs`` measured as ``latencies`` under ``key``."""

    key: dict[str, Any]
    device: str
    archs: list[ArchConfig]
    latencies: list[float]
    model: FittedPredictor
    features: str = "analytic"
    units: UnitTable | None = None

    @property
    def report(self) -> dict[str, Any]:
        return self.model.report

    def predict(self, cfgs: list[ArchConfig]) -> list[float]:
        return self.model.predict(featurize(cfgs, self.units))


def featurize(cfgs: list[ArchConfig], units: UnitTable | None) -> list[Features]:
    """The predictor's features of ``cfgs``: analytic, plus unit sums with a unit table."""
    out = [arch_features(c) for c in cfgs]
    return out if units is None else [with_units(f, units.sums(c)) for f, c in zip(out, cfgs)]


def resolve_features(features: str, backend: Any) -> str:
    """``features`` with ``auto`` decided for ``backend`` (an object): see the module docstring."""
    if features not in FEATURE_CHOICES:
        raise EdgeExploreError(f"features must be one of {', '.join(FEATURE_CHOICES)}, "
                               f"not {features!r}")
    if features == "auto":
        return "analytic" if getattr(backend, "remote", False) else "units"
    return features


def _unit_table(features: str, backend: Any, batch: int, store: Store) -> UnitTable | None:
    if features != "units":
        return None
    from .lut import LUTBackend

    lut = LUTBackend(base=backend, calibrate=0)
    lut.use_store(store)
    return UnitTable(lut, batch)


def measuring_backend(backend: Any, threads: int | None = None, **settings: Any) -> Any:
    """``backend`` as an object, refused when it cannot train a predictor: one whose results are
    not cached (``lut``) predicts rather than measures, and a predictor learns from the latency
    cache (``predictor fit`` and ``backend: predicted`` both ask here)."""
    b = resolve_backend(backend, threads=threads, **settings)
    if not getattr(b, "cacheable", True):
        raise EdgeExploreError(f"the backend {b.name!r} is not cached: it predicts latency "
                               "rather than measuring it, so no predictor can learn from it; "
                               "measure with another backend (e.g. torch-cpu)")
    return b


def _open(store: Store | None) -> Store:
    return store if store is not None else open_store()


def _fit_and_save(store: Store, key: dict[str, Any], device: str, archs: list[ArchConfig],
                  latencies: list[float], features: str, units: UnitTable | None
                  ) -> DevicePredictor:
    model = fit_predictor(featurize(archs, units), latencies, FEATURE_SETS[features])
    report = {**model.report, "candidates": model.candidates}
    tables.put_predictor(store, key, device=device, method=model.method, features=features,
                         archs=[c.to_dict() for c in archs], report=report)
    return DevicePredictor(key, device, archs, latencies, model, features, units)


def fit_device(candidates: list[ArchConfig], samples: int, backend: str = "torch-cpu",
               batch: int = 1, threads: int | None = None, store: Store | None = None,
               progress: Callable[[int, int, ArchConfig], None] | None = None,
               features: str = "auto", **settings: Any) -> DevicePredictor:
    """Measure up to ``samples`` architectures (the stored training set first, then the most
    diverse ``candidates`` by :func:`config_features`, cheap enough for hundreds), fit the
    predictor on ``features`` (see the module docstring) and store it; ``progress(i, n, cfg)``
    is called before each measurement."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise EdgeExploreError(f"samples must be a positive integer, not {samples!r}")
    store = _open(store)
    b = measuring_backend(backend, threads=threads, **settings)
    features = resolve_features(features, b)
    key = backend_key(b, batch)
    row = tables.get_predictor(store, key)
    known = [ArchConfig.from_dict(d) for d in row["archs"]] if row else []
    pool = list({c.hash: c for c in [*known, *candidates]}.values())
    if samples > len(pool):
        raise EdgeExploreError(f"{samples} samples asked for, but only {len(pool)} distinct "
                               "architectures to choose from")
    order = select_diverse([config_features(c) for c in pool], max(samples, len(known)),
                           chosen=list(range(len(known))))
    chosen = [pool[i] for i in order]
    latencies = []
    for i, cfg in enumerate(chosen):
        if progress is not None:
            progress(i, len(chosen), cfg)
        latencies.append(measure_arch(cfg, backend=b, batch=batch, store=store).median_ms)
    device = _short_device(b.describe_device())
    return _fit_and_save(store, key, device, chosen, latencies, features,
                         _unit_table(features, b, batch, store))


def load_predictor(backend: str = "torch-cpu", batch: int = 1, threads: int | None = None,
                   store: Store | None = None, **settings: Any) -> DevicePredictor | None:
    """The stored predictor for this backend, settings and device, refitted from its cached
    measurements; None when none was fitted here."""
    store = _open(store)
    b = measuring_backend(backend, threads=threads, **settings)
    key = backend_key(b, batch)
    row = tables.get_predictor(store, key)
    if row is None:
        return None
    archs, latencies = cached_latencies(store, b, batch,
                                        [ArchConfig.from_dict(d) for d in row["archs"]])
    units = _unit_table(row["features"], b, batch, store)
    model = fit_predictor(featurize(archs, units), latencies, FEATURE_SETS[row["features"]])
    return DevicePredictor(key, row["device"], archs, latencies, model, row["features"], units)


def cached_latencies(store: Store, backend: Any, batch: int, cfgs: list[ArchConfig]
                     ) -> tuple[list[ArchConfig], list[float]]:
    """Those of ``cfgs`` measured on ``backend`` (an object) at ``batch`` on this device, with
    their cached medians; one never measured here (or deleted from the cache) is left out."""
    archs, latencies = [], []
    for cfg in cfgs:
        hit = tables.cached_record(store, cache_key(cfg.hash, input_shape_for(cfg, batch),
                                                    backend))
        if hit is not None:
            archs.append(cfg)
            latencies.append(hit["median_ms"])
    return archs, latencies


def grow_predictor(backend: Any, batch: int, cfgs: list[ArchConfig], latencies: list[float],
                   store: Store) -> DevicePredictor:
    """The stored predictor of ``backend`` (an object) refitted with ``cfgs`` measured as
    ``latencies`` added to its training set, or fitted on them alone when none is stored; the
    result is stored. The stored row is read here, not taken from the caller, so what another
    process added meanwhile is kept."""
    key = backend_key(backend, batch)
    row = tables.get_predictor(store, key)
    known = cached_latencies(store, backend, batch,
                             [ArchConfig.from_dict(d) for d in row["archs"]]) if row else ([], [])
    merged = {c.hash: (c, y) for c, y in zip(*known)}
    merged.update({c.hash: (c, y) for c, y in zip(cfgs, latencies)})
    device = row["device"] if row else _short_device(backend.describe_device())
    features = row["features"] if row else resolve_features("auto", backend)
    return _fit_and_save(store, key, device, [c for c, _ in merged.values()],
                         [y for _, y in merged.values()], features,
                         _unit_table(features, backend, batch, store))


def add_measurements(pred: DevicePredictor, cfgs: list[ArchConfig], latencies: list[float],
                     store: Store | None = None) -> DevicePredictor:
    """``pred`` refitted with more measured architectures (already in the cache) and stored."""
    merged = {c.hash: (c, y) for c, y in zip(pred.archs, pred.latencies)}
    merged.update({c.hash: (c, y) for c, y in zip(cfgs, latencies)})
    archs = [c for c, _ in merged.values()]
    return _fit_and_save(_open(store), pred.key, pred.device, archs,
                         [y for _, y in merged.values()], pred.features, pred.units)

