"""Can the proxy be trusted? Proxy accuracy against the accuracy of longer trainings.

:func:`choose_trials` picks the trials to retrain; :mod:`edgeexplore.evaluation.fidelity` trains
them (``trainings`` rows under one spec key); :func:`report` then compares, reading only:
Kendall's tau and Spearman's rho between proxy and long accuracy with percentile-bootstrap 95%
intervals, the same correlations of FLOPs and parameters with long accuracy (what a proxy must
beat to be worth its training), and top-k retrieval. :func:`plot` draws proxy against long.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from ..errors import EdgeExploreError
from ..store import COMPLETE, Architecture, TrialResult
from ..store.trainings import Training
from . import query
from .figures import plot_path, pyplot, save
from .pareto import spread


@dataclass
class Candidate:
    """A trial to retrain: one per distinct architecture of the study."""

    trial_id: int
    number: int | None
    arch_hash: str
    config: str  # ArchConfig JSON
    accuracy: float  # the proxy's
    flops: int | None
    params: int | None
    on_front: bool
    #: the hash of the network as trained long, when its input or classes differ (full recipes)
    trained_hash: str | None = None
    long_accuracy: float | None = None  # filled by report()


def choose_trials(study: str, top: int, storage: str | None = None) -> list[Candidate]:
    """``top`` complete trials of ``study``, spread over the front and over the rest.

    The rule: half (rounded up) come from the study's Pareto front (its own objectives), evenly
    spaced along it; the other half from the trials off the front, evenly spaced over their proxy
    accuracy ranking (best, worst and between), so the comparison sees the whole range and not
    only the best. When one group is too small the other fills in. Repeated architectures count
    once (their first trial).
    """
    if top < 2:
        raise EdgeExploreError(f"--top must be at least 2 to correlate anything, not {top}")
    engine = query.open_store(storage)
    query._check_studies(engine, study)
    with engine.connect() as conn:
        rows = conn.execute(
            select(TrialResult.id, TrialResult.number, TrialResult.arch_hash, Architecture.config,
                   TrialResult.accuracy, TrialResult.flops, TrialResult.params)
            .join(Architecture, TrialResult.arch_hash == Architecture.hash)
            .where(TrialResult.study == study, TrialResult.state == COMPLETE,
                   TrialResult.accuracy.is_not(None))
            .order_by(TrialResult.id)).all()
    seen: dict[str, Candidate] = {}
    for r in rows:
        seen.setdefault(r.arch_hash, Candidate(r.id, r.number, r.arch_hash, r.config,
                                               float(r.accuracy), r.flops, r.params, False))
    trials = list(seen.values())
    if len(trials) < 2:
        raise EdgeExploreError(f"study {study!r} has {len(trials)} complete trial(s) with a "
                               "proxy accuracy and a distinct architecture; fidelity needs 2")
    front = query.pareto_front(study, storage=storage)
    front_ids = [front.ids[i] for i in front.front]  # sorted along the front
    by_id = {c.trial_id: c for c in trials}
    on_front = [by_id[i] for i in front_ids if i in by_id]
    for c in on_front:
        c.on_front = True
    rest = sorted((c for c in trials if not c.on_front), key=lambda c: -c.accuracy)
    n_front = min(len(on_front), max(math.ceil(top / 2), top - len(rest)))
    chosen = spread(on_front, n_front) + spread(rest, top - n_front)
    return sorted(chosen, key=lambda c: c.trial_id)


@dataclass
class Correlation:
    """Kendall's tau and Spearman's rho with their bootstrap 95% intervals."""

    tau: float
    tau_ci: tuple[float, float]
    rho: float
    rho_ci: tuple[float, float]


@dataclass
class FidelityReport:
    study: str
    spec_key: str
    trials: list[Candidate]
    proxy: Correlation  # proxy accuracy vs long accuracy
    flops: Correlation | None  # FLOPs vs long accuracy: the baseline a proxy must beat
    params: Correlation | None
    k: int
    retrieved: int  # of the long top-k, how many are also in the proxy's top-k
    missing: int = 0  # chosen trials without a complete long training (not compared)
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per chosen trial, its architecture JSON left out."""
        return [{k: v for k, v in asdict(c).items() if k != "config"} for c in self.trials]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "trials": self.rows()}


def correlate(x: np.ndarray, y: np.ndarray, resamples: int = 2000, seed: int = 0
              ) -> Correlation:
    """Kendall's tau-b and Spearman's rho of (x, y) and percentile-bootstrap 95% intervals
    (pairs resampled; resamples where either side is constant are skipped, as undefined)."""
    from scipy.stats import kendalltau, spearmanr

    tau = float(kendalltau(x, y).statistic)
    rho = float(spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    taus, rhos = [], []
    for _ in range(resamples):
        i = rng.integers(0, len(x), len(x))
        if np.ptp(x[i]) == 0 or np.ptp(y[i]) == 0:
            continue
        taus.append(kendalltau(x[i], y[i]).statistic)
        rhos.append(spearmanr(x[i], y[i]).statistic)

    def ci(v: list[float]) -> tuple[float, float]:
        if not v:
            return (math.nan, math.nan)
        lo, hi = np.nanpercentile(v, [2.5, 97.5])
        return (float(lo), float(hi))

    return Correlation(tau, ci(taus), rho, ci(rhos))


def report(study: str, trials: list[Candidate], spec_key: str, storage: str | None = None,
           k: int | None = None, resamples: int = 2000, seed: int = 0) -> FidelityReport:
    """Compare the proxy with the complete trainings under ``spec_key`` of ``trials``.

    Long accuracy is the best validation top-1 of the latest complete training. ``k`` (default
    a quarter of the trials, at least 1) sizes the top-k retrieval.
    """
    with query.open_store(storage).connect() as conn:
        for c in trials:
            c.long_accuracy = conn.scalar(
                select(Training.best_top1).where(
                    Training.arch_hash == (c.trained_hash or c.arch_hash),
                    Training.spec_key == spec_key,
                    Training.state == COMPLETE).order_by(Training.id.desc()).limit(1))
    done = [c for c in trials if c.long_accuracy is not None]
    if len(done) < 2:
        raise EdgeExploreError(f"only {len(done)} of the {len(trials)} chosen trials have a "
                               "complete long training; nothing to correlate")
    long = np.array([c.long_accuracy for c in done], dtype=float)
    proxy = np.array([c.accuracy for c in done], dtype=float)
    notes = []
    if np.ptp(long) == 0 or np.ptp(proxy) == 0:
        notes.append("every trial has the same accuracy on one side: the correlations are "
                     "undefined (train longer or on more data)")

    def baseline(name: str) -> Correlation | None:
        v = [getattr(c, name) for c in done]
        if any(x is None for x in v):
            return None
        return correlate(np.array(v, dtype=float), long, resamples, seed)

    k = max(1, len(done) // 4) if k is None else min(k, len(done))
    top_long = set(np.argsort(-long, kind="stable")[:k].tolist())
    top_proxy = set(np.argsort(-proxy, kind="stable")[:k].tolist())
    return FidelityReport(study, spec_key, trials, correlate(proxy, long, resamples, seed),
                          baseline("flops"), baseline("params"), k, len(top_long & top_proxy),
                          len(trials) - len(done), notes)


def plot(rep: FidelityReport, path: str | Path) -> Path:
    """Proxy accuracy (x) against long accuracy (y), front members marked; ``.png``/``.svg``."""
    path = plot_path(path, page=False)  # before importing matplotlib
    fig, ax = pyplot().subplots(figsize=(5.5, 4.5))
    for front, style in ((False, {"marker": "o", "color": "tab:gray", "label": "off the front"}),
                         (True, {"marker": "*", "s": 140, "color": "tab:red",
                                 "label": "Pareto front"})):
        pts = [c for c in rep.trials if c.on_front == front and c.long_accuracy is not None]
        if pts:
            ax.scatter([100 * c.accuracy for c in pts], [100 * c.long_accuracy for c in pts],
                       **style)
        for c in pts:
            ax.annotate(str(c.number), (100 * c.accuracy, 100 * c.long_accuracy), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    p = rep.proxy
    ax.set_title(f"{rep.study}: Kendall tau {p.tau:.2f}, Spearman rho {p.rho:.2f}", fontsize=10)
    ax.set_xlabel("proxy top-1 (%)")
    ax.set_ylabel("long training top-1 (%)")
    ax.legend(fontsize=8)
    return save(fig, path, rep.study, page=False)
