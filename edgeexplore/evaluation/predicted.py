"""Predicted latency that a search does not trust blindly (issue 15, item 3).

With a ``predicted`` latency spec (:attr:`LatencySpec.prediction`), the pipeline's latency stage
asks the learned predictor of the spec's backend, settings and device
(:mod:`edgeexplore.latency.device_predictor`) instead of the backend, and stores the prediction
with the predictor's cross-validated error (``trial_latency``). The backend still measures:

* **until the predictor is trusted at all**: while its training set has fewer than
  ``min_measured`` architectures (none stored yet for this device, or a small one), every trial
  is measured, and those measurements are its first training set;
* **near the front** (:func:`settle`, after every trial of the study): a predicted trial is
  measured unless a *measured* trial dominates it even at its most optimistic latency, the
  prediction divided by (1 + the predictor's worst cross-validated relative error). Measuring
  can move a front member (its true latency is higher than predicted), which can bring other
  predicted trials near the front, so this repeats until none is left. At the end of every
  trial, therefore, each trial on the study's front, and each one within the predictor's error
  of it, has a measured latency;
* **at a hard latency limit**: a prediction whose error range straddles the space's
  ``max_latency_ms`` is measured to decide (see :func:`bounds`).

Every measurement goes through the latency cache and back into the predictor's training set
(:func:`learn`): the predictor is refitted after ``refit_every`` new measurements, or after its
training set grew by a fifth when that is more, so the leave-one-out cross-validation of a refit
(one fit per measured architecture and method) stays a bounded share of the search's time.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select, update

from .. import store
from ..config import ArchConfig
from ..objectives import Objective
from ..store import Architecture, TrialResult, db, trial_latency
from ..store import latency as tables
from ..store.trial_latency import MEASURED, PREDICTED, TrialLatency
from .outcome import Outcome
from .specs import LatencySpec


@dataclass(frozen=True)
class Bound:
    """A latency the limits are checked against in place of a measurement (one end of a
    prediction's error range): what ``Limits.check_latency`` reads of a measurement."""

    median_ms: float
    energy_j: None = None
    energy_note: str = "not measured: the latency was predicted"


@dataclass
class _Loaded:
    updated_at: Any
    predictor: Any  # DevicePredictor


#: per process: the predictor refitted from the store, by store and key, while its row stands
_LOADED: dict[str, _Loaded] = {}


def _backend(spec: LatencySpec) -> Any:
    from ..latency.measure import resolve_backend

    return resolve_backend(spec.backend, threads=spec.threads, **spec.settings)


def _key(spec: LatencySpec) -> tuple[Any, dict[str, Any]]:
    from ..latency.measure import backend_key

    b = _backend(spec)
    return b, backend_key(b, spec.batch)


def predict(cfg: ArchConfig, spec: LatencySpec, url: str) -> dict[str, Any] | None:
    """``cfg``'s predicted latency with the predictor's error (``trial_latency`` columns), or
    None while the predictor has fewer than ``min_measured`` architectures (measure instead)."""
    from ..latency.device_predictor import load_predictor

    assert spec.prediction is not None
    st = db.open_store(url)
    b, key = _key(spec)
    row = tables.get_predictor(st, key)
    if row is None or len(row["archs"]) < spec.prediction.min_measured:
        return None
    where = json.dumps([url, key], sort_keys=True)
    loaded = _LOADED.get(where)
    if loaded is None or loaded.updated_at != row["updated_at"]:
        # refitted from the cached measurements once per change of the stored row
        loaded = _Loaded(row["updated_at"], load_predictor(b, batch=spec.batch, store=st))
        _LOADED[where] = loaded
    pred = loaded.predictor
    r = pred.report
    return {"predicted_ms": pred.predict([cfg])[0], "predictor_error": r["max_ape"],
            "predictor_mape": r["mape"], "predictor_within10": r["within10"],
            "predictor_n": len(pred.archs), "predictor_method": pred.model.method}


def bounds(prediction: dict[str, Any]) -> tuple[float, float]:
    """The latencies a measurement may show, given the predictor's worst relative error e:
    ``|p - m| / m <= e`` means ``p / (1 + e) <= m <= p / (1 - e)`` (no upper end when e >= 1)."""
    p, e = prediction["predicted_ms"], prediction["predictor_error"]
    return p / (1 + e), (p / (1 - e) if e < 1 else math.inf)


def near_front(values: np.ndarray, predicted: np.ndarray, error: np.ndarray,
               objectives: tuple[Objective, ...] | list[Objective]) -> np.ndarray:
    """Which points must be measured: the predicted ones (``predicted``) that no measured point
    dominates when their latency is its lowest within ``error`` (NaN: unknown, i.e. any)."""
    values = np.asarray(values, dtype=float)
    optimistic = values.copy()
    names = [o.name for o in objectives]
    if "latency_ms" in names and predicted.any():
        col = names.index("latency_ms")
        e = np.where(np.isnan(error), math.inf, error)
        optimistic[predicted, col] = values[predicted, col] / (1 + e[predicted])
    signs = np.array([o.sign for o in objectives], dtype=float)
    loss, best_case = values * signs, optimistic * signs
    measured = loss[~predicted]
    out = np.zeros(len(values), dtype=bool)
    for i in np.flatnonzero(predicted):
        no_worse = (measured <= best_case[i]).all(axis=1)
        better = (measured < best_case[i]).any(axis=1)
        out[i] = not (no_worse & better).any()
    return out


def settle(study: str, objectives: tuple[Objective, ...], spec: LatencySpec, url: str
           ) -> dict[int, Any]:
    """Measure the study's complete trials whose predicted latency could put them on its front
    (see the module docstring), then let the predictor learn from the study's measurements;
    returns the measurements taken, by ``trial_results`` id."""
    taken: dict[int, Any] = {}
    while True:
        ids, configs, values, predicted, error = _points(study, objectives, url)
        todo = np.flatnonzero(near_front(values, predicted, error, objectives))
        if not todo.size:
            break
        for i in todo:
            taken[ids[i]] = _measure_trial(ids[i], ArchConfig.from_json(configs[i]), spec, url)
    learn(study, spec, url)
    return taken


def _points(study: str, objectives: tuple[Objective, ...], url: str):
    """The study's complete trials with every objective: ids, configs, values, which are
    predicted and the predictor error each was predicted with."""
    cols = [getattr(TrialResult, o.name) for o in objectives]
    with db.session_scope(url) as s:
        rows = s.execute(
            select(TrialResult.id, Architecture.config, TrialLatency.source,
                   TrialLatency.predictor_error, *cols)
            .join(Architecture, TrialResult.arch_hash == Architecture.hash)
            .outerjoin(TrialLatency, TrialLatency.trial_id == TrialResult.id)
            .where(TrialResult.study == study, TrialResult.state == store.COMPLETE,
                   *[c.is_not(None) for c in cols])
            .order_by(TrialResult.id)).all()
    values = np.array([r[4:] for r in rows], dtype=float).reshape(len(rows), len(cols))
    predicted = np.array([r.source == PREDICTED for r in rows], dtype=bool)
    error = np.array([np.nan if r.predictor_error is None else r.predictor_error for r in rows],
                     dtype=float)
    return [r.id for r in rows], [r.config for r in rows], values, predicted, error


def _measure_trial(trial_id: int, cfg: ArchConfig, spec: LatencySpec, url: str) -> Any:
    """Measure a predicted trial and store it as measured (the prediction is kept beside)."""
    m = spec.measure(cfg, url)
    with db.session_scope(url) as s:
        row = s.get(TrialResult, trial_id)
        metrics = json.loads(row.metrics) if row.metrics else {}
        scratch = Outcome(row.state)
        scratch.prediction = trial_latency.get(s, trial_id)
        scratch.take_latency(m)
        metrics.update(scratch.metrics, latency_ms=scratch.latency_ms)
        values = {"latency_ms": scratch.latency_ms, "latency_p90_ms": scratch.latency_p90_ms,
                  "latency_cv": scratch.latency_cv,
                  "metrics": json.dumps(metrics, sort_keys=True, default=str)}
        if scratch.energy_mj is not None:
            values["energy_mj"] = scratch.energy_mj
        s.execute(update(TrialResult).where(TrialResult.id == trial_id).values(**values))
        trial_latency.mark_measured(s, trial_id)
    return m


def learn(study: str, spec: LatencySpec, url: str) -> None:
    """Add the architectures the study measured on this device to the predictor's training set
    (refitting it) once enough are new: ``min_measured`` in all for a first fit, then
    ``refit_every`` or a fifth of the training set, whichever is more."""
    from ..latency.device_predictor import cached_latencies, grow_predictor

    assert spec.prediction is not None
    st = db.open_store(url)
    b, key = _key(spec)
    row = tables.get_predictor(st, key)
    known = {ArchConfig.from_dict(d).hash for d in row["archs"]} if row else set()
    with db.session_scope(url) as s:
        configs = s.scalars(
            select(Architecture.config).distinct()
            .join(TrialResult, TrialResult.arch_hash == Architecture.hash)
            .join(TrialLatency, TrialLatency.trial_id == TrialResult.id)
            .where(TrialResult.study == study, TrialResult.backend == spec.backend,
                   TrialLatency.source == MEASURED)).all()
    fresh = [c for c in map(ArchConfig.from_json, configs) if c.hash not in known]
    # measured on this device with these settings: what the cache holds under the key
    archs, latencies = cached_latencies(st, b, spec.batch, fresh)
    p = spec.prediction
    if not archs or len(known) + len(archs) < p.min_measured:
        return
    if len(known) >= p.min_measured and len(archs) < max(p.refit_every, len(known) // 5):
        return
    grow_predictor(b, spec.batch, archs, latencies, st)
