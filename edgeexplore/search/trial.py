"""One trial of a study: what happens between Optuna's ``ask`` and ``tell``.

Kept apart from the loop in :mod:`edgeexplore.search.study` so the loop only handles budgets, workers and
crashes, and this module only turns one sampled architecture into one stored result.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

from sqlalchemy import update

from .. import store
from ..config import ArchConfig
from ..errors import ConfigError, EdgeExploreError
from ..store import TrialResult, db
from .recipe import StudyRecipe


class TrialRunner:
    """Evaluates sampled architectures for one study in one process."""

    def __init__(self, recipe: StudyRecipe, url: str, study: str, env_id: int,
                 progress: bool = True) -> None:
        from ..training.proxy import ProxyRecipe

        self.recipe = recipe
        self.url = url
        self.study = study
        self.env_id = env_id
        self.progress = progress
        self.proxy = ProxyRecipe.from_dict(recipe.proxy)
        self.train_key = store.train_key(self.proxy.to_dict(), recipe.data_key(), recipe.seed)

    # -- bookkeeping -----------------------------------------------------------------------------
    def mark(self, row_id: int, state: str, reason: str | None = None) -> None:
        """Finish a row without results (failures, interruptions)."""
        with db.session_scope(self.url) as s:
            s.execute(update(TrialResult).where(TrialResult.id == row_id).values(
                state=state, reason=reason, finished_at=db.utcnow()))

    def _data(self, cfg: ArchConfig):
        from ..data import load_data

        r = self.recipe
        return load_data(r.data, resolution=cfg.resolution, subset=r.subset,
                         val_subset=r.val_subset, seed=r.seed)

    def num_classes(self) -> int:
        r = self.recipe
        res = r.resolution or r.space.resolution[0]
        from ..data import load_data

        return load_data(r.data, resolution=res, subset=r.subset, val_subset=r.val_subset,
                         seed=r.seed).num_classes

    # -- the trial -----------------------------------------------------------------------------
    def run(self, trial: Any, row_id: int) -> Any:
        from .study import TrialOutcome

        r = self.recipe
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        outcome = TrialOutcome(row_id, trial.number, store.RUNNING)
        try:
            cfg = r.space.suggest(trial, num_classes=self.num_classes(), resolution=r.resolution)
        except ConfigError as e:
            timings["sample_seconds"] = time.perf_counter() - t0
            outcome.state, outcome.reason = store.INFEASIBLE, f"not a valid architecture: {e}"
            return self._finish(outcome, None, None, None, None, timings, t0)
        timings["sample_seconds"] = time.perf_counter() - t0
        outcome.arch_hash, outcome.description = cfg.hash, cfg.describe()

        t = time.perf_counter()
        try:
            cost = self._cost(cfg)
        except ConfigError as e:
            # valid as a config, but the builder refuses it (e.g. a window larger than the map)
            timings["cost_seconds"] = time.perf_counter() - t
            outcome.state, outcome.reason = store.INFEASIBLE, f"cannot be built: {e}"
            return self._finish(outcome, cfg, None, None, None, timings, t0)
        timings["cost_seconds"] = time.perf_counter() - t
        outcome.flops, outcome.params = int(cost.flops), int(cost.params)
        why = r.space.constraints.check_cost(outcome.params, outcome.flops)
        if why:
            outcome.state, outcome.reason = store.INFEASIBLE, why
            return self._finish(outcome, cfg, cost, None, None, timings, t0)

        t = time.perf_counter()
        measurement = self._latency(cfg, r.backend)
        outcome.latency_ms = float(measurement.median_ms)
        energy = measurement.energy_j
        if energy and energy.get("median_j") is not None:
            outcome.energy_mj = float(energy["median_j"]) * 1e3
        cons = r.space.constraints
        if cons.max_latency_ms is not None:
            lat = outcome.latency_ms
            if cons.latency_backend and cons.latency_backend != r.backend:
                lat = float(self._latency(cfg, cons.latency_backend).median_ms)
            why = cons.check_latency(lat)
        timings["latency_seconds"] = time.perf_counter() - t
        if why:
            outcome.state, outcome.reason = store.INFEASIBLE, why
            return self._finish(outcome, cfg, cost, measurement, None, timings, t0)
        if any(o.name == "energy_mj" for o in r.objectives) and outcome.energy_mj is None:
            note = measurement.energy_note or "no energy counter"
            raise EdgeExploreError(f"the objective energy needs a backend that measures "
                                   f"energy; {r.backend} reports: {note}")

        # Training: reuse an earlier run of the same architecture, recipe, data and seed.
        with db.session_scope(self.url) as s:
            prior = store.find_reusable(s, cfg.hash, self.train_key)
            if prior is not None:
                prior_fields = {k: getattr(prior, k) for k in
                                ("id", "accuracy", "curve", "epochs", "images_per_second",
                                 "train_seconds", "metrics")}
        if prior is not None:
            outcome.accuracy = prior_fields["accuracy"]
            outcome.reused = True
            outcome.state = store.COMPLETE
            timings["train_seconds"] = 0.0
            return self._finish(outcome, cfg, cost, measurement, prior_fields, timings, t0)

        t = time.perf_counter()
        result = self._train(cfg, outcome)
        timings["train_seconds"] = time.perf_counter() - t
        return self._finish(outcome, cfg, cost, measurement, result, timings, t0)

    def _cost(self, cfg: ArchConfig) -> Any:
        """The stored cost of a known architecture, else a fresh count (traces the model)."""
        with db.session_scope(self.url) as s:
            row = store.get_architecture(s, cfg.hash)
            if row is not None and row.flops is not None:
                return SimpleNamespace(params=row.params, flops=row.flops,
                                       activations=row.activations, per_stage=row.per_stage)
        from ..cost import count_cost

        return count_cost(cfg)

    def _latency(self, cfg: ArchConfig, backend: str) -> Any:
        from ..latency import measure_arch

        s = dict(self.recipe.backend_settings)
        batch, threads = int(s.pop("batch", 1)), s.pop("threads", None)
        if backend != self.recipe.backend:
            s = {}  # the settings belong to the study's backend, not the constraint's
        return measure_arch(cfg, backend=backend, batch=batch, threads=threads,
                            store=db.open_store(self.url), **s)

    def _train(self, cfg: ArchConfig, outcome: Any) -> dict[str, Any]:
        from ..models import build
        from ..training.proxy import DivergedError, early_stopper, seed_everything, train_proxy

        r = self.recipe
        data = self._data(cfg)
        on_epoch = None
        es = r.early_stopping
        if es.enabled:
            with db.session_scope(self.url) as s:
                curves = store.completed_curves(s, self.study, self.train_key)
            on_epoch = early_stopper(curves, quantile=es.quantile, min_trials=es.min_trials,
                                     min_epoch=es.min_epoch)
        seed_everything(r.seed)  # identical initial weights for the same seed
        model = build(self.proxy.arch_for(cfg))
        try:
            res = train_proxy(model, data, self.proxy, seed=r.seed, on_epoch=on_epoch,
                              progress=self.progress)
        except DivergedError as e:
            outcome.state = store.DIVERGED
            outcome.reason = str(e)
            partial = e.result
            return {"curve": json.dumps(partial.curve) if partial else None,
                    "epochs": partial.epochs if partial else e.epoch,
                    "images_per_second": partial.images_per_second if partial else None,
                    "train_seconds": partial.train_seconds if partial else None,
                    "metrics": None}
        outcome.accuracy = float(res.accuracy)
        if res.status == "stopped_early":
            outcome.state = store.PRUNED
            outcome.reason = (f"stopped early at epoch {res.epochs}: accuracy {res.accuracy:.3f} "
                              f"below the {es.quantile:.0%} quantile of completed trials")
        else:
            outcome.state = store.COMPLETE
        extra = {"best_accuracy": res.best_accuracy, "eval_seconds": res.eval_seconds,
                 "steps": res.steps, "device": res.device, "amp": res.amp,
                 "channels_last": res.channels_last}
        return {"curve": json.dumps(res.curve), "epochs": res.epochs,
                "images_per_second": res.images_per_second, "train_seconds": res.train_seconds,
                "metrics": extra}

    def _finish(self, o: Any, cfg: ArchConfig | None, cost: Any, m: Any,
                trained: dict[str, Any] | None, timings: dict[str, float], t0: float) -> Any:
        """Write the architecture and the result in one transaction."""
        t = time.perf_counter()
        metrics: dict[str, Any] = {}
        if trained and trained.get("metrics"):
            extra = trained["metrics"]
            metrics.update(json.loads(extra) if isinstance(extra, str) else extra)
        if m is not None:
            metrics["latency"] = {k: getattr(m, k) for k in (
                "median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms", "iqr_ms", "cv", "count",
                "batch", "threads", "stop_reason", "cached")}
            metrics["latency"]["device"] = m.device
        for k in ("accuracy", "latency_ms", "flops", "params", "energy_mj"):
            if getattr(o, k) is not None:
                metrics[k] = getattr(o, k)
        values: dict[str, Any] = dict(
            state=o.state, reason=o.reason, arch_hash=o.arch_hash, accuracy=o.accuracy,
            latency_ms=o.latency_ms, energy_mj=o.energy_mj, flops=o.flops, params=o.params,
            activations=int(cost.activations) if cost is not None else None,
            latency_p90_ms=float(m.p90_ms) if m is not None else None,
            latency_cv=float(m.cv) if m is not None else None,
            resolution=f"{cfg.resolution[0]}x{cfg.resolution[1]}" if cfg else None,
            metrics=json.dumps(metrics, sort_keys=True, default=str),
            finished_at=db.utcnow(), heartbeat_at=db.utcnow(),
            **{k: round(v, 6) for k, v in timings.items()},
        )
        if trained is not None:
            values.update(curve=trained.get("curve"), epochs=trained.get("epochs"),
                          images_per_second=trained.get("images_per_second"))
            if o.reused:
                values["reused_from"] = trained["id"]
                values["train_seconds"] = 0.0
        with db.session_scope(self.url) as s:
            if cfg is not None:
                store.upsert_architecture(s, cfg, cost)
                s.flush()
            s.execute(update(TrialResult).where(TrialResult.id == row_id_of(o)).values(**values))
        store_s = time.perf_counter() - t
        total = time.perf_counter() - t0
        with db.session_scope(self.url) as s:
            # the write's own duration can only be stored after it; a second tiny update
            s.execute(update(TrialResult).where(TrialResult.id == row_id_of(o)).values(
                store_seconds=round(store_s, 6), total_seconds=round(total, 6)))
        o.timings = {**timings, "store_seconds": store_s, "total_seconds": total}
        return o


def row_id_of(o: Any) -> int:
    return int(o.id)
