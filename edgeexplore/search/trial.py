"""One trial of a study: what happens between Optuna's ``ask`` and ``tell``.

Kept apart from the loop in :mod:`edgeexplore.search.study` so the loop only handles budgets,
workers and crashes. The evaluation itself is :func:`edgeexplore.evaluation.evaluate`; what is
particular to a search is here: the space samples the architecture (before the pipeline starts,
so that a repeat of an infeasible one is not evaluated at all), its hard limits are checked
between cost and training, hopeless trainings stop early, and the result goes into the row the
loop reserved.
"""

from __future__ import annotations

import time
from functools import cached_property
from typing import Any

from sqlalchemy import update

from .. import store
from ..config import ArchConfig
from ..errors import ConfigError, EdgeExploreError
from ..evaluation import (
    DataSpec,
    EarlyStop,
    LatencySpec,
    Outcome,
    TrainingSpec,
    TrialRow,
    evaluate,
    failure_reason,
    predicted,
)
from ..store import TrialResult, db
from .recipe import StudyRecipe
from .repeats import Repeat, register
from .samplers import set_constraints


def training_spec(recipe: StudyRecipe) -> TrainingSpec:
    """The study's proxy recipe on its data with its seed (the same for every trial)."""
    return TrainingSpec.proxy(recipe.proxy, DataSpec.from_dict(recipe.data_key()), recipe.seed)


def latency_spec(recipe: StudyRecipe) -> LatencySpec:
    """The study's backend, its settings and, for ``backend: predicted``, its prediction."""
    return LatencySpec.from_settings(recipe.backend, recipe.backend_settings, recipe.prediction)


def settle_latency(recipe: StudyRecipe, study: str, url: str) -> dict[int, Any]:
    """With predicted latency: measure the trials the front needs measured (by row id)."""
    if recipe.prediction is None:
        return {}
    return predicted.settle(study, recipe.objectives, latency_spec(recipe), url)


class _SpaceLimits:
    """The space's max params / FLOPs / latency, and the energy an energy objective needs."""

    def __init__(self, recipe: StudyRecipe, latency: LatencySpec, url: str) -> None:
        self.recipe, self.latency, self.url = recipe, latency, url
        self.constraints = recipe.space.constraints

    def check_cost(self, params: int, flops: int) -> str | None:
        return self.constraints.check_cost(params, flops)

    def check_latency(self, cfg: ArchConfig, measurement: Any) -> str | None:
        cons = self.constraints
        if cons.max_latency_ms is not None:
            lat = float(measurement.median_ms)
            if cons.latency_backend and cons.latency_backend != self.latency.backend:
                # the study's settings belong to its own backend, not the constraint's
                other = LatencySpec(cons.latency_backend, batch=self.latency.batch,
                                    threads=self.latency.threads)
                lat = float(other.measure(cfg, self.url).median_ms)
            why = cons.check_latency(lat)
            if why:
                return why
        wants_energy = any(o.name == "energy_mj" for o in self.recipe.objectives)
        if wants_energy and (measurement.energy_j or {}).get("median_j") is None:
            note = measurement.energy_note or "no energy counter"
            raise EdgeExploreError(f"the objective energy needs a backend that measures "
                                   f"energy; {self.latency.backend} reports: {note}")
        return None


class TrialRunner:
    """Evaluates sampled architectures for one study in one process."""

    def __init__(self, recipe: StudyRecipe, url: str, study: str, progress: bool = True) -> None:
        self.recipe = recipe
        self.url = url
        self.study = study
        self.progress = progress
        self.training = training_spec(recipe)
        self.latency = latency_spec(recipe)
        es = recipe.early_stopping
        self.early_stop = (EarlyStop(study, es.quantile, es.min_trials, es.min_epoch)
                           if es.enabled else None)
        self.limits = _SpaceLimits(recipe, self.latency, url)

    @cached_property
    def num_classes(self) -> int:
        """The data's class count (the head's size), loaded once: a folder is not kept in memory,
        so asking every trial read the whole folder a second time (beside its training's)."""
        r = self.recipe
        return self.training.load_data(r.resolution or r.space.resolution[0]).num_classes

    def run(self, trial: Any, row_id: int, link: dict[str, Any]) -> Outcome | Repeat:
        """Sample, then evaluate and store into the reserved row ``row_id`` (``link`` names the
        trial there), unless the study already found the architecture infeasible: then only
        the Optuna trial carries its stored constraint values (see :mod:`.repeats`)."""
        r = self.recipe
        row = _SampledRow(self.url, row_id)
        try:
            started = time.perf_counter()
            try:
                cfg = r.space.suggest(trial, num_classes=self.num_classes,
                                      resolution=r.resolution)
            except ConfigError as e:
                rejected = e
                cfg = None
            row.sample_seconds = time.perf_counter() - started
            if cfg is None:  # no architecture, so nothing to look up
                row.link(link)
            else:
                repeat = register(self.url, self.study, row_id, cfg, link, r.space.constraints,
                                  self.latency)
                if repeat is not None:
                    # what the sampler would have learnt from checking it again
                    set_constraints(trial, r.space.constraints, repeat.values)
                    return repeat
        except BaseException as e:  # the pipeline has not started: the row is ours to fail
            row.failed(failure_reason(e), Outcome(store.FAILED))
            raise

        def sampled() -> ArchConfig:
            # the pipeline records a sample the space rejects as infeasible, as it always has
            if cfg is None:
                raise rejected
            return cfg

        out = evaluate(sampled, row, training=self.training, latency=self.latency,
                       storage=self.url, limits=self.limits, early_stop=self.early_stop,
                       progress=self.progress)
        out.number = trial.number
        # before Optuna is told: a trial measured now reports its measured latency
        measured = settle_latency(r, self.study, self.url).get(row_id)
        if measured is not None:
            out.take_latency(measured)
        if out.params is not None:
            # constraint-aware sampling: TPE and GP learn the infeasible region from these
            set_constraints(trial, r.space.constraints, {
                "params": out.params, "flops": out.flops, "latency_ms": out.latency_ms})
        return out


class _SampledRow(TrialRow):
    """The reserved row of a trial sampled before the pipeline started (so that a repeat is
    known before anything is counted or timed): the sampling's time is added to the row's."""

    sample_seconds = 0.0

    def link(self, values: dict[str, Any]) -> None:
        with db.session_scope(self.url) as s:
            s.execute(update(TrialResult).where(TrialResult.id == self.row_id).values(**values))

    def write(self, session: Any, outcome: Outcome) -> None:
        outcome.timings["sample_seconds"] = self.sample_seconds
        super().write(session, outcome)

    def times(self, storage: str, outcome: Outcome) -> None:
        outcome.timings["total_seconds"] += self.sample_seconds
        super().times(storage, outcome)
