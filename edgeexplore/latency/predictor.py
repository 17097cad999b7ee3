"""A learned latency predictor: a regression from cheap architecture features, fitted per device.

The ``lut`` backend ranks well but its absolute error follows whatever it misses between units
(issue 15: MAPE 11%, 11 of 12 too high). This predictor instead learns latency from a few
architectures measured on the device itself, with the backend and settings the search uses:

* **features** (:func:`arch_features`): FLOPs, parameters and activations (fvcore), the FLOPs of
  each block kind, each stage's FLOPs, token count, width and depth, the input's pixels and the
  number of leaf modules (a proxy for kernel launches / per-op dispatch), all computed without
  timing anything, so a prediction for a phone needs no phone;
* **which architectures to measure** (:func:`select_diverse`): greedy farthest-point selection in
  standardised log-feature space, so 20-30 measurements span the space instead of clustering
  where random sampling happens to fall;
* **the model** (:func:`fit_predictor`): candidates are compared by leave-one-out
  cross-validation on the measured architectures and the simplest whose MAPE is within one
  standard error of the best is kept; its
  cross-validated error (share within ±5% and ±10%, MAPE, worst error, Kendall's tau) is the
  error reported with every prediction, so it is never flattered by the fit.

Candidates: ``additive`` (latency as a non-negative weighted sum of per-kind FLOPs, activations
and module count, fitted for relative error: each term is work a device does, so it
extrapolates sensibly), ``ridge-log`` (ridge regression of log latency on log features:
multiplicative effects) and ``gbm-log`` (scikit-learn gradient boosting on the same: non-linear,
but needs more samples than a phone user takes).

With the device's unit table (:func:`with_units`: the stem, every block and the head timed one by
one on the device, as the ``lut`` backend keeps them) two more compete: ``units-scale`` (latency
as a multiple of the units' total) and ``units-kinds`` (a non-negative weighted sum of the
units' time per block kind), both through the origin and fitted for relative error. Timed units
see what no count of FLOPs or modules does, such as how fast this device runs a 7×7 depthwise
conv or a matmul over 49 tokens, and the whole network is then close to a scaled sum of its
parts: the scale absorbs what timing a unit alone adds or misses.

Persistence (:mod:`.device_predictor`): the store keeps, per device fingerprint, backend,
settings and batch, the features, the training architectures and the CV report, never a pickled
model; the model is refitted from the cached measurements when loaded (a fit takes well under a
second).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from ..config import BLOCKS, STAGE_STRIDES, ArchConfig
from ..errors import EdgeExploreError

#: candidates on features computed from the architecture alone, in order of preference when
#: their CV errors tie (simplest first)
ANALYTIC_METHODS = ("additive", "ridge-log", "gbm-log")
#: candidates that also read the device's unit table (:func:`with_units`)
UNIT_METHODS = ("units-scale", "units-kinds")
#: what each feature set lets the fit compare
FEATURE_SETS = {"analytic": ANALYTIC_METHODS, "units": UNIT_METHODS + ANALYTIC_METHODS}
#: what a predictor's features may be asked as (``auto``: see device_predictor)
FEATURE_CHOICES = ("auto", *FEATURE_SETS)
#: fewest measurements a fit accepts: below this leave-one-out says nothing
MIN_SAMPLES = 5


@dataclass(frozen=True)
class Features:
    """Named, non-negative features of one architecture at its resolution."""

    arch_hash: str
    values: dict[str, float]


def feature_names() -> list[str]:
    kinds = [f"flops_{k}" for k in sorted(BLOCKS)]
    stages = [f"{n}{i}" for i in range(1, 5) for n in ("flops_s", "tokens_s", "width_s",
                                                        "depth_s")]
    return ["flops", "params", "activations", "pixels", "modules", *kinds, *stages]


def arch_features(cfg: ArchConfig) -> Features:
    """The features of ``cfg``, all read off its FLOP count (~0.1-0.3 s, cached)."""
    from ..cost import count_cost

    cost = count_cost(cfg)
    h, w = cfg.resolution
    v: dict[str, float] = {
        "flops": cost.flops, "params": cost.params, "activations": cost.activations,
        "pixels": h * w, "modules": cost.modules,
    }
    v.update({f"flops_{k}": 0.0 for k in BLOCKS})
    for i, (st, stride) in enumerate(zip(cfg.stages, STAGE_STRIDES), start=1):
        flops = cost.per_stage.get(f"stage{i}", 0)
        v[f"flops_{st.block}"] += flops
        v.update({f"flops_s{i}": flops, f"tokens_s{i}": (h // stride) * (w // stride),
                  f"width_s{i}": st.width, f"depth_s{i}": st.depth})
    return Features(cfg.hash, {k: float(v[k]) for k in feature_names()})


def unit_feature_names() -> list[str]:
    return ["units_total", *(f"units_{g}" for g in (*sorted(BLOCKS), "other"))]


def with_units(features: Features, sums: dict[str, float]) -> Features:
    """``features`` plus the architecture's unit medians on the device
    (:meth:`~edgeexplore.latency.lut.LUTBackend.unit_sums`): their total and per block kind."""
    units = {name: float(sums.get(name.removeprefix("units_"), 0.0))
             for name in unit_feature_names()}
    return Features(features.arch_hash, {**features.values, **units})


def config_features(cfg: ArchConfig) -> Features:
    """Features from the config alone (microseconds, no FLOP counting), for choosing among
    hundreds of candidates: per block kind, Σ tokens·width²·depth (the shape of its FLOPs) and
    its block count; per stage, tokens, width and depth; the input's pixels."""
    h, w = cfg.resolution
    v: dict[str, float] = {"pixels": h * w}
    v.update({f"work_{k}": 0.0 for k in sorted(BLOCKS)})
    v.update({f"blocks_{k}": 0.0 for k in sorted(BLOCKS)})
    for i, (st, stride) in enumerate(zip(cfg.stages, STAGE_STRIDES), start=1):
        tokens = (h // stride) * (w // stride)
        v[f"work_{st.block}"] += tokens * st.width ** 2 * st.depth
        v[f"blocks_{st.block}"] += st.depth
        v.update({f"tokens_s{i}": tokens, f"width_s{i}": st.width, f"depth_s{i}": st.depth})
    return Features(cfg.hash, {k: float(x) for k, x in v.items()})


def _matrix(features: list[Features]) -> Any:
    import numpy as np

    names = list(features[0].values)
    return np.array([[f.values[n] for n in names] for f in features], dtype=float)


def select_diverse(features: list[Features], n: int, chosen: list[int] | tuple = ()) -> list[int]:
    """Indices of ``n`` architectures to measure: ``chosen`` first, then greedy farthest-point.

    Any features will do (:func:`config_features` for a large pool, :func:`arch_features`).
    Distances are Euclidean on standardised log features, so FLOPs and module counts weigh the
    same; the first pick (when nothing is chosen yet) is the architecture nearest the centre, and
    each next one is the farthest from everything picked, which covers the extremes a regression
    must not extrapolate to.
    """
    import numpy as np

    if n > len(features):
        raise EdgeExploreError(f"cannot choose {n} architectures out of {len(features)}")
    x = np.log1p(_matrix(features))
    spread = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    picked = list(dict.fromkeys(chosen))[:n]
    if not picked:
        picked = [int(np.argmin((x ** 2).sum(axis=1)))]
    dist = np.min([((x - x[i]) ** 2).sum(axis=1) for i in picked], axis=0)
    while len(picked) < n:
        nxt = int(np.argmax(dist))
        picked.append(nxt)
        dist = np.minimum(dist, ((x - x[nxt]) ** 2).sum(axis=1))
    return picked


def _additive_columns(method: str) -> list[str]:
    """The work terms each non-negative additive method weighs."""
    if method == "units-scale":
        return ["units_total"]
    if method == "units-kinds":
        return unit_feature_names()[1:]
    return [f"flops_{k}" for k in sorted(BLOCKS)] + ["activations", "modules"]


def _estimator(method: str, n: int) -> Any:
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import LinearRegression, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if method == "additive":
        # not centred, so a zero-work term contributes zero and positivity keeps its meaning
        return make_pipeline(StandardScaler(with_mean=False), LinearRegression(positive=True))
    if method in UNIT_METHODS:
        # the units already hold all the work: no intercept, which few samples would misplace
        return make_pipeline(StandardScaler(with_mean=False),
                             LinearRegression(positive=True, fit_intercept=False))
    if method == "ridge-log":
        return make_pipeline(StandardScaler(), RidgeCV(alphas=[10.0 ** k for k in range(-3, 4)]))
    if method == "gbm-log":
        return GradientBoostingRegressor(n_estimators=100, max_depth=2, learning_rate=0.05,
                                         min_samples_leaf=max(2, n // 10), random_state=0)
    raise EdgeExploreError(f"unknown predictor method {method!r}; one of "
                           f"{', '.join(FEATURE_SETS['units'])}")


def _design(method: str, features: list[Features]) -> Any:
    import numpy as np

    if _additive(method):
        names = _additive_columns(method)
        return np.array([[f.values[c] for c in names] for f in features], dtype=float)
    return np.log1p(_matrix(features))


def _weights(method: str) -> int:
    """How many numbers an additive method fits (its terms, and ``additive``'s intercept)."""
    return len(_additive_columns(method)) + (method == "additive")


def _additive(method: str) -> bool:
    """Whether ``method`` predicts latency itself (a weighted sum of work), not its log."""
    return method == "additive" or method in UNIT_METHODS


def _fit_one(method: str, features: list[Features], y: list[float]) -> Any:
    import numpy as np

    est = _estimator(method, len(y))
    x, t = _design(method, features), np.asarray(y, dtype=float)
    if _additive(method):
        # weights 1/y²: least squares on relative error, so a 5 ms network counts like a 50 ms one
        est.fit(x, t, linearregression__sample_weight=1.0 / t ** 2)
    else:
        est.fit(x, np.log(t))
    return est


def _predict_one(method: str, est: Any, features: list[Features]) -> list[float]:
    import numpy as np

    out = est.predict(_design(method, features))
    out = out if _additive(method) else np.exp(out)
    return [max(float(v), 1e-6) for v in out]


def error_report(pred: list[float], true: list[float]) -> dict[str, float]:
    """Share within ±5% / ±10%, MAPE, worst relative error and Kendall's tau of ``pred``."""
    from scipy.stats import kendalltau

    errs = [abs(p - t) / t for p, t in zip(pred, true)]
    tau = kendalltau(pred, true).statistic if len(true) > 1 else float("nan")
    return {"n": len(errs), "within5": sum(e <= 0.05 for e in errs) / len(errs),
            "within10": sum(e <= 0.10 for e in errs) / len(errs),
            "mape": statistics.fmean(errs), "max_ape": max(errs),
            "tau": float(tau) if not math.isnan(tau) else None}


def cross_validate(method: str, features: list[Features], y: list[float]) -> list[float]:
    """Leave-one-out predictions: each architecture predicted by a fit without it."""
    return [_predict_one(method, _fit_one(method, features[:i] + features[i + 1:],
                                          y[:i] + y[i + 1:]), [features[i]])[0]
            for i in range(len(y))]


@dataclass
class FittedPredictor:
    """The chosen regression, refitted on every measured architecture, and its CV error."""

    method: str
    estimator: Any
    report: dict[str, Any]
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)  # every method's CV

    def predict(self, features: list[Features]) -> list[float]:
        return _predict_one(self.method, self.estimator, features)


def fit_predictor(features: list[Features], latencies_ms: list[float],
                  methods: tuple[str, ...] = ANALYTIC_METHODS) -> FittedPredictor:
    """Compare ``methods`` by leave-one-out MAPE, refit the chosen one on everything, report its
    CV. Additive methods with too many weights for the samples are left out of the comparison."""
    if len(features) != len(latencies_ms):
        raise EdgeExploreError("the predictor needs one latency per architecture")
    if len(features) < MIN_SAMPLES:
        raise EdgeExploreError(f"the predictor needs at least {MIN_SAMPLES} measured "
                               f"architectures, not {len(features)}")
    if any(not v > 0 for v in latencies_ms):
        raise EdgeExploreError("every measured latency must be positive")
    # An additive method with as many weights as a leave-one-out fit has points interpolates
    # them: its CV error then says nothing (5 samples once showed "worst error 0.1%").
    methods = tuple(m for m in methods
                    if not _additive(m) or _weights(m) < len(features) - 1)
    cv = {m: cross_validate(m, features, latencies_ms) for m in methods}
    reports = {m: error_report(p, latencies_ms) for m, p in cv.items()}
    chosen = _simplest_within_one_se(methods, cv, latencies_ms)
    return FittedPredictor(chosen, _fit_one(chosen, features, latencies_ms), reports[chosen],
                           reports)


def _simplest_within_one_se(methods: tuple[str, ...], cv: dict[str, list[float]],
                            true: list[float]) -> str:
    """The first of ``methods`` (simplest first) whose leave-one-out MAPE is within one standard
    error of the best one's. Picking the plain minimum over-fits the choice itself: on 30
    diverse samples here a flexible model's lucky CV once beat ``units-scale`` by a little and
    then missed ±10% on a third of the held-out networks, ``units-scale`` on a twentieth."""
    errs = {m: [abs(p - t) / t for p, t in zip(cv[m], true)] for m in methods}
    best = min(methods, key=lambda m: statistics.fmean(errs[m]))
    se = statistics.stdev(errs[best]) / math.sqrt(len(true))
    limit = statistics.fmean(errs[best]) + se
    return next(m for m in methods if statistics.fmean(errs[m]) <= limit)
