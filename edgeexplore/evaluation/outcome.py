"""What one evaluation produced: the one result type of searches, ablations and preset points."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import EdgeExploreError
from ..store.trial_latency import MEASURED, PREDICTED

#: how the reason of an interrupted evaluation starts (a search does not count those against its
#: trial budget)
INTERRUPTED = "interrupted"

#: latency statistics copied into ``metrics["latency"]``
_LATENCY_FIELDS = ("median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms", "iqr_ms", "cv", "count",
                   "batch", "threads", "stop_reason", "cached")


@dataclass(frozen=True)
class Prior:
    """An earlier training of the same architecture and training spec, reused instead of
    training again; ``table`` says where it is stored (``trial_results`` or ``preset_trainings``)."""

    table: str
    id: int
    study: str | None
    accuracy: float
    curve: str | None  # JSON, as stored
    epochs: int | None = None
    images_per_second: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """One architecture evaluated: its state, cost, latency, training and where time went.

    ``state`` is one of the store's states (:data:`edgeexplore.store.STATES`); a stage that was
    not asked for (no latency spec, no training spec) leaves its fields ``None``. ``id`` is the
    row the caller's recorder wrote (a ``trial_results`` id for searches and ablations);
    ``number`` is the Optuna trial number in a search.
    """

    state: str
    arch_hash: str | None = None
    description: str = ""
    reason: str | None = None
    flops: int | None = None
    params: int | None = None
    activations: int | None = None
    latency_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_cv: float | None = None
    energy_mj: float | None = None
    accuracy: float | None = None
    curve: str | None = None  # JSON list of per-epoch dicts
    epochs: int | None = None
    images_per_second: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    prior: Prior | None = None
    timings: dict[str, float] = field(default_factory=dict)
    resolution: str | None = None  # "HxW"
    #: "measured" or "predicted" (by the learned predictor); None without latency
    latency_source: str | None = None
    #: the learned predictor's value and error (``trial_latency`` columns), when it predicted
    prediction: dict[str, Any] | None = None
    id: int | None = None
    number: int | None = None

    @property
    def reused(self) -> bool:
        return self.prior is not None

    def take_latency(self, m: Any) -> None:
        """Copy a latency Measurement's statistics (and its energy, where measured)."""
        self.latency_ms = float(m.median_ms)
        self.latency_p90_ms = float(m.p90_ms)
        self.latency_cv = float(m.cv)
        energy = m.energy_j
        if energy and energy.get("median_j") is not None:
            self.energy_mj = float(energy["median_j"]) * 1e3
        self.metrics["latency"] = {k: getattr(m, k) for k in _LATENCY_FIELDS}
        self.metrics["latency"]["device"] = m.device
        self.latency_source = MEASURED
        if self.prediction is not None:
            self.metrics["latency"]["predicted_ms"] = self.prediction["predicted_ms"]

    def take_prediction(self, prediction: dict[str, Any]) -> None:
        """The learned predictor's latency (``trial_latency`` columns): no statistics, no
        energy, until the trial is measured."""
        self.prediction = prediction
        self.latency_ms = prediction["predicted_ms"]
        self.latency_source = PREDICTED
        self.metrics["latency"] = {"predicted_ms": prediction["predicted_ms"]}

    def take_prior(self, prior: Prior) -> None:
        self.prior = prior
        self.accuracy = prior.accuracy
        self.curve, self.epochs = prior.curve, prior.epochs
        self.images_per_second = prior.images_per_second
        # this evaluation's own latency wins over the prior's
        self.metrics = {**prior.metrics, **self.metrics}

    def value(self, name: str) -> float | None:
        """A stored metric by its column name (``accuracy``, ``latency_ms``, ``flops``, ...)."""
        v = getattr(self, name, None)
        return None if v is None else float(v)

    def latency_row(self) -> dict[str, Any] | None:
        """The ``trial_latency`` columns (None when the latency is unknown)."""
        if self.latency_source is None:
            return None
        return {**(self.prediction or {}), "source": self.latency_source}

    def row_values(self) -> dict[str, Any]:
        """The ``trial_results`` columns this outcome fills."""
        metrics = dict(self.metrics)
        for k in ("accuracy", "latency_ms", "flops", "params", "energy_mj"):
            if getattr(self, k) is not None:
                metrics[k] = getattr(self, k)
        values = {k: getattr(self, k) for k in (
            "state", "reason", "arch_hash", "accuracy", "latency_ms", "latency_p90_ms",
            "latency_cv", "energy_mj", "flops", "params", "activations", "resolution", "curve",
            "epochs", "images_per_second")}
        values["metrics"] = json.dumps(metrics, sort_keys=True, default=str)
        values.update({k: round(v, 6) for k, v in self.timings.items()})
        if self.prior is not None and self.prior.table == "trial_results":
            values["reused_from"] = self.prior.id
        return values


def failure_reason(exc: BaseException) -> str:
    """How a failed evaluation's ``reason`` reads (interruptions start with "interrupted")."""
    if isinstance(exc, KeyboardInterrupt):
        return f"{INTERRUPTED} by Ctrl-C"
    if isinstance(exc, EdgeExploreError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
