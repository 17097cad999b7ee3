"""``lut``: predict latency from a per-unit lookup table, calibrated on a few measured models.

A model is cut into *units*: for an :class:`~edgeexplore.models.EdgeBackbone` the stem, each
stage's downsampler, every block, the final norm, the head norm and the classifier; for any other
module its top-level children (containers expanded). Each unit's input shape is derived from
``model.arch`` (stage widths and strides), which costs microseconds; the derivation is checked
against a forward pass with hooks once per set of unit classes, and any model without ``.arch``
(or whose units disagree) is traced instead. A unit's *signature* hashes its class, its
``repr`` (which spells out its layers and hyper-parameters; drop-path rates are removed, they do
nothing at inference), its parameter and buffer shapes and its input shape, so two blocks that
compute the same thing share one entry whatever architecture they sit in. Each distinct
signature is timed once on the base backend (``torch-cpu`` by default, a small time budget per
unit) and stored.

The prediction is the sum of the units' medians plus a constant that absorbs what the units do
not see (pooling, Python dispatch between units, cache effects). The constant is the median of
(measured - sum) over calibration models: the first ``calibrate`` models this backend is asked
about (per input shape, base backend and device) are also measured whole on the base backend.
Its error is reported with every prediction (leave-one-out over the calibration models, so it
is not flattered by the fit).

Persistence: the units and the calibration live in the store's ``latency_lut_units`` and
``latency_lut_calibration`` tables (:mod:`edgeexplore.store.latency`), beside the measurement
cache: one file, shared by every study and every process that uses the same store, which
:func:`~edgeexplore.latency.measure_arch` hands over through :meth:`LUTBackend.use_store`.
"""

from __future__ import annotations

import hashlib
import re
import statistics
import time
from dataclasses import dataclass
from typing import Any

from ..errors import EdgeExploreError
from ..store import Store, open_store
from ..store import latency as tables
from ..store.latency import LutCalibration
from .base import Measurement, device_fingerprint, settings_json, shape_str
from .registry import get_backend

#: what each unit is timed with unless ``unit_budget_s`` says otherwise: units take 0.01-20 ms,
#: so a quarter second gives tens to thousands of samples
UNIT_BUDGET_S = 0.25
_DROP = re.compile(r"drop_prob=[0-9.e-]+|p=[0-9.e-]+")


@dataclass
class Unit:
    name: str
    module: Any
    input_shape: tuple[int, ...] | None = None
    extra_args: tuple = ()
    signature: str = ""


def _units(model: Any) -> list[Unit]:
    from torch import nn

    units: list[Unit] = []
    if all(hasattr(model, a) for a in ("stem", "stages", "head")):
        units.append(Unit("stem", model.stem))
        for i, stage in enumerate(model.stages):
            if not isinstance(stage.downsample, nn.Identity):
                units.append(Unit(f"stages.{i}.downsample", stage.downsample))
            blocks = stage.blocks
            children = list(blocks.children()) if isinstance(blocks, nn.Sequential) else [blocks]
            units += [Unit(f"stages.{i}.blocks.{j}", b) for j, b in enumerate(children)]
        for name in ("norm", "head_norm", "head"):
            mod = getattr(model, name, None)
            if mod is not None and not isinstance(mod, nn.Identity):
                units.append(Unit(name, mod))
        return units

    def expand(prefix: str, mod: nn.Module) -> None:
        for name, child in mod.named_children():
            full = f"{prefix}{name}"
            if isinstance(child, (nn.Sequential, nn.ModuleList)):
                expand(full + ".", child)
            elif not isinstance(child, nn.Identity):
                units.append(Unit(full, child))

    expand("", model)
    return units


def signature(module: Any, input_shape: tuple[int, ...]) -> str:
    """Hash of what a unit computes: class, structure, parameter shapes (not values)."""
    parts = [type(module).__module__ + "." + type(module).__qualname__, _DROP.sub("", repr(module))]
    parts += [f"{n}:{tuple(p.shape)}" for n, p in module.named_parameters()]
    parts += [f"{n}:{tuple(b.shape)}" for n, b in module.named_buffers()]
    parts.append(shape_str(input_shape))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def trace_units(model: Any, input_shape: tuple[int, ...]) -> list[Unit]:
    """The model's units with the input shape each one sees (one forward pass)."""
    import torch

    units = _units(model)
    handles = []

    def hook_for(u: Unit):
        def hook(_mod: Any, args: tuple) -> None:
            if u.input_shape is None and args and isinstance(args[0], torch.Tensor):
                u.input_shape = tuple(args[0].shape)
                u.extra_args = tuple(args[1:])
        return hook

    for u in units:
        handles.append(u.module.register_forward_pre_hook(hook_for(u)))
    try:
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(*input_shape))
    finally:
        for h in handles:
            h.remove()
    used = [u for u in units if u.input_shape is not None]
    for u in used:
        u.signature = signature(u.module, u.input_shape)
    return used


def analytic_units(model: Any, input_shape: tuple[int, ...]) -> list[Unit] | None:
    """Units with input shapes derived from ``model.arch`` (no forward pass), or None.

    Our backbone's layout fixes every unit's input: stage ``i`` works on ``width_i`` channels at
    stride ``STAGE_STRIDES[i]``, the head on the pooled last-stage vector. Deriving the shapes
    costs microseconds where a forward pass costs an inference; :class:`LUTBackend` checks the
    derivation against a traced forward pass once per set of unit classes before trusting it.
    """
    from ..config import STAGE_STRIDES

    arch = getattr(model, "arch", None)
    if arch is None or not hasattr(arch, "stages") or len(input_shape) != 4:
        return None
    b, _, h, w = input_shape
    maps = [(b, st.width, h // s, w // s) for st, s in zip(arch.stages, STAGE_STRIDES)]
    units = _units(model)
    for u in units:
        parts = u.name.split(".")
        if u.name == "stem":
            u.input_shape = tuple(input_shape)
        elif parts[0] == "stages" and parts[2] == "downsample":
            u.input_shape = maps[int(parts[1]) - 1]
        elif parts[0] == "stages":
            u.input_shape = maps[int(parts[1])]
        elif u.name == "norm":
            u.input_shape = maps[-1]
        else:  # head_norm, head: the pooled vector
            u.input_shape = (b, arch.stages[-1].width)
        u.signature = signature(u.module, u.input_shape)
    return units


#: sets of unit classes for which :func:`analytic_units` was checked against a forward pass
_VERIFIED: set[frozenset[str]] = set()


def model_units(model: Any, input_shape: tuple[int, ...]) -> list[Unit]:
    """:func:`analytic_units` where verified for these unit classes, else :func:`trace_units`."""
    units = analytic_units(model, input_shape)
    if units is None:
        return trace_units(model, input_shape)
    kinds = frozenset(f"{type(u.module).__module__}.{type(u.module).__qualname__}" for u in units)
    if kinds in _VERIFIED:
        return units
    traced = trace_units(model, input_shape)
    same = [(u.name, u.input_shape) for u in units] == [(t.name, t.input_shape) for t in traced]
    if same and not any(t.extra_args for t in traced):
        _VERIFIED.add(kinds)
    return traced


class _Bound:
    """A unit called with its recorded extra positional arguments (rare; our blocks take one)."""

    def __init__(self, module: Any, extra: tuple) -> None:
        self.module, self.extra = module, extra

    def eval(self) -> _Bound:
        self.module.eval()
        return self

    def __call__(self, x: Any) -> Any:
        return self.module(x, *self.extra)


class LUTBackend:
    """Latency = Σ unit medians (timed once each on ``base``) + a calibrated constant."""

    name = "lut"
    cacheable = False  # predictions are cheap, and the constant improves as calibration grows

    def __init__(
        self,
        base: str | Any = "torch-cpu",
        threads: int | None = None,
        calibrate: int = 3,
        unit_budget_s: float = UNIT_BUDGET_S,
        **base_settings: Any,
    ) -> None:
        if base == "lut" or getattr(base, "name", None) == "lut":
            raise EdgeExploreError("the lut backend cannot use itself as its base backend")
        if isinstance(calibrate, bool) or not isinstance(calibrate, int) or calibrate < 0:
            raise EdgeExploreError(f"calibrate must be a non-negative integer, not {calibrate!r}")
        self.calibrate_n = calibrate
        self._store: Store | None = None
        if isinstance(base, str):
            # Whole models are timed with the base backend's own settings; units with a smaller
            # budget (their medians settle fast).
            self.base = get_backend(base, threads=threads, **base_settings)
            self.unit_base = get_backend(base, threads=threads, **{**base_settings,
                                                                 "budget_s": unit_budget_s})
        else:  # a backend object (the learned predictor's): units timed as it times models
            self.base = self.unit_base = base
        self.base_name = self.base.name
        self.unit_budget_s = unit_budget_s
        self._memo: dict[tuple, float] = {}
        self._loaded = False
        self._key_cache: dict[str, str] | None = None

    def use_store(self, store: Store) -> None:
        if store is not self._store:
            self._store, self._loaded = store, False
            self._memo.clear()  # timings of another store's table are not this one's

    @property
    def store(self) -> Store:
        """Where the table lives: the store handed over, else the default one."""
        if self._store is None:
            self._store = open_store()
        return self._store

    # -- identity ----------------------------------------------------------------------------
    @property
    def settings(self) -> dict[str, Any]:
        return {"base": self.base_name, "base_settings": getattr(self.base, "settings", {}),
                "calibrate": self.calibrate_n, "unit_budget_s": self.unit_budget_s}

    def available(self) -> tuple[bool, str]:
        ok, why = self.base.available()
        if not ok:
            return False, f"its base backend {self.base_name!r} is not available: {why}"
        return True, f"lookup table over {self.base_name} ({why})"

    def describe_device(self) -> dict[str, Any]:
        return {**self.base.describe_device(), "predicted_by": "lut"}

    def _key(self) -> dict[str, str]:
        if self._key_cache is None:
            self._key_cache = {
                "base_backend": self.base_name,
                "base_settings": settings_json(getattr(self.base, "settings", {})),
                "device_fingerprint": device_fingerprint(self.base.describe_device()),
            }
        return self._key_cache

    # -- the table ---------------------------------------------------------------------------
    def unit_latency(self, unit: Unit) -> tuple[float, bool]:
        """(median ms of the unit, whether it had to be timed now)."""
        key = self._key()
        shape = shape_str(unit.input_shape)
        memo_key = (unit.signature, shape, *key.values())
        if memo_key in self._memo:
            return self._memo[memo_key], False
        if not self._loaded:
            # One query for the whole table of this base/device: a prediction is then free of
            # database round trips, which matters when it is made in every search trial.
            for (sig, unit_shape), ms in tables.lut_units(self.store, key).items():
                self._memo[(sig, unit_shape, *key.values())] = ms
            self._loaded = True
            if memo_key in self._memo:
                return self._memo[memo_key], False
        stored = tables.lut_unit(self.store, unit.signature, shape, key)
        if stored is not None:
            self._memo[memo_key] = stored
            return stored, False
        mod = unit.module if not unit.extra_args else _Bound(unit.module, unit.extra_args)
        m = self.unit_base.measure(mod, unit.input_shape)
        tables.add_lut_unit(self.store, signature=unit.signature, kind=type(unit.module).__name__,
                            input_shape=shape, median_ms=m.median_ms, p10_ms=m.p10_ms,
                            p90_ms=m.p90_ms, cv=m.cv, count=m.count, **key)
        self._memo[memo_key] = m.median_ms
        return m.median_ms, True

    def unit_sums(self, model: Any, input_shape: tuple[int, ...]) -> dict[str, float]:
        """``model``'s unit medians summed per group, timing the units not in the table yet:
        ``total``; for an EdgeBackbone each block kind's blocks (named by kind) and ``other``
        (stem, downsamplers, norms, head). The learned predictor's unit features."""
        arch = getattr(model, "arch", None)
        sums: dict[str, float] = {"total": 0.0}
        for u in model_units(model, tuple(int(d) for d in input_shape)):
            ms = self.unit_latency(u)[0]
            parts = u.name.split(".")
            group = "other"
            if arch is not None and len(parts) > 3 and parts[0] == "stages" and parts[2] == "blocks":
                group = arch.stages[int(parts[1])].block
            sums[group] = sums.get(group, 0.0) + ms
            sums["total"] += ms
        return sums

    def calibration(self, input_shape: tuple[int, ...]) -> list[LutCalibration]:
        return tables.lut_calibration(self.store, shape_str(input_shape), self._key())

    def add_calibration(self, model: Any, input_shape: tuple[int, ...],
                        units: list[Unit] | None = None) -> LutCalibration:
        """Measure ``model`` whole on the base backend and record it beside its unit sum."""
        units = units if units is not None else model_units(model, input_shape)
        unit_sum = sum(self.unit_latency(u)[0] for u in units)
        measured = self.base.measure(model, input_shape).median_ms
        row = LutCalibration(model_key=_model_key(model, units), input_shape=shape_str(input_shape),
                             unit_sum_ms=unit_sum, measured_ms=measured, **self._key())
        tables.add_lut_calibration(self.store, row)
        return row

    # -- predicting --------------------------------------------------------------------------
    def measure(self, model: Any, input_shape: tuple[int, ...]) -> Measurement:
        t0 = time.perf_counter()
        shape = tuple(int(d) for d in input_shape)
        units = model_units(model, shape)
        if not units:
            raise EdgeExploreError("the lut backend found no units to time in this model")
        timed_now = 0
        unit_sum = 0.0
        for u in units:
            ms, new = self.unit_latency(u)
            unit_sum += ms
            timed_now += new
        calib = self.calibration(shape)
        key = _model_key(model, units)
        measured = next((c.measured_ms for c in calib if c.model_key == key), None)
        if len(calib) < self.calibrate_n and measured is None:
            row = self.add_calibration(model, shape, units)
            calib.append(row)
            measured = row.measured_ms
        constant, error = _fit(calib)
        predicted = max(unit_sum + constant, 1e-6)
        threads = getattr(self.base, "threads", None)
        extra = {
            "unit_sum_ms": unit_sum, "constant_ms": constant, "units": len(units),
            "distinct_units": len({(u.signature, u.input_shape) for u in units}),
            "units_timed_now": timed_now, "calibration_models": len(calib), "error": error,
            "measured_ms": measured,
        }
        return Measurement.from_samples(
            self.name, [predicted], warmup=0, threads=threads, input_shape=shape,
            device=self.describe_device(), settings=self.settings, stop_reason="predicted",
            energy_note="not available: the lut backend predicts latency only",
            wall_s=time.perf_counter() - t0, extra=extra,
        )


def _model_key(model: Any, units: list[Unit]) -> str:
    arch = getattr(model, "arch", None)
    if arch is not None and hasattr(arch, "hash"):
        return str(arch.hash)
    return hashlib.sha256("".join(u.signature for u in units).encode()).hexdigest()[:16]


def _fit(calib: list[LutCalibration]) -> tuple[float, dict[str, Any]]:
    """The constant (median residual) and its leave-one-out error on the calibration models."""
    residuals = [c.measured_ms - c.unit_sum_ms for c in calib]
    if not residuals:
        return 0.0, {"n": 0, "note": "uncalibrated: the constant is 0 (calibrate=0)"}
    constant = statistics.median(residuals)
    if len(calib) < 2:
        ape = abs(calib[0].unit_sum_ms + constant - calib[0].measured_ms) / calib[0].measured_ms
        return constant, {"n": 1, "mape": ape, "max_ape": ape, "method": "in-sample"}
    apes = []
    for i, c in enumerate(calib):
        rest = residuals[:i] + residuals[i + 1:]
        pred = c.unit_sum_ms + statistics.median(rest)
        apes.append(abs(pred - c.measured_ms) / c.measured_ms)
    return constant, {"n": len(calib), "mape": statistics.fmean(apes), "max_ape": max(apes),
                      "method": "leave-one-out"}
