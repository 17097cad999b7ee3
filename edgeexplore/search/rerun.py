"""Re-running one stored trial's architecture (``trials rerun ID``).

The architecture goes through the evaluation pipeline again with the trial's own proxy recipe,
latency backend and settings and its study's data, into a new ``trial_results`` row of the same
study (``metrics.rerun_of`` names the original). It is not an Optuna trial: the sampler has
already seen the architecture, and a second seed of one network is a measurement of noise, not
a new point of the search. No limits or early stopping apply: the network passed them once.

Seed: by default the trial's own seed when the trial has no result to reuse (failed,
interrupted, pruned, diverged, still running: the run it was meant to be), else the trial's
seed + 1 (with the same seed a complete trial's result would simply be reused).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from .. import store
from ..config import ArchConfig
from ..errors import EdgeExploreError
from ..evaluation import (
    DataSpec,
    LatencySpec,
    Outcome,
    TrainingSpec,
    TrialRow,
    evaluate,
    new_trial_row,
)
from ..store import TrialResult, db
from ..study_summary import optuna_study_attrs


class _RerunRow(TrialRow):
    def __init__(self, url: str, row_id: int, original: int) -> None:
        super().__init__(url, row_id)
        self.original = original

    def write(self, session: Session, outcome: Outcome) -> None:
        outcome.metrics["rerun_of"] = self.original
        super().write(session, outcome)


def _study_data(url: str, study: str) -> DataSpec:
    """The study's data spec, from the recipe the search left in Optuna's study."""
    recipe: Any = optuna_study_attrs(db.get_engine(url)).get(study, {}).get("recipe")
    if not recipe or "data" not in recipe:
        raise EdgeExploreError(f"study {study!r} has no search recipe stored in Optuna's study "
                               "(not made by `edgeexplore search`), so its data is unknown")
    return DataSpec.from_dict(recipe["data"])


def plan_rerun(trial_id: int, storage: str | None, seed: int | None
               ) -> tuple[str, ArchConfig, TrainingSpec, LatencySpec | None]:
    """The study, architecture, training and latency of a re-run of trial ``trial_id``."""
    url = db.normalise_url(storage)
    with db.session_scope(url) as s:
        # SQLite ids are 64-bit: a larger number cannot be bound, and names no trial anyway
        row = s.get(TrialResult, trial_id) if -(2**63) <= trial_id < 2**63 else None
        if row is None:
            raise EdgeExploreError(f"no trial with id {trial_id}")
        if row.arch_hash is None:
            raise EdgeExploreError(f"trial {trial_id} has no architecture to re-run ({row.state}: "
                                   "its sampled values were not a valid architecture)")
        if not row.recipe:
            raise EdgeExploreError(f"trial {trial_id} stored no training recipe to re-run with")
        cfg = ArchConfig.from_json(row.architecture.config)
        study, recipe, own_seed = row.study, json.loads(row.recipe), row.seed
        has_result = row.state == store.COMPLETE
        latency = (LatencySpec.from_settings(row.backend, json.loads(row.backend_settings or "{}"))
                   if row.backend else None)
    if seed is None:
        seed = own_seed + 1 if has_result else own_seed
    training = TrainingSpec.proxy(recipe, _study_data(url, study), seed)
    return study, cfg, training, latency


def rerun_trial(trial_id: int, storage: str | None = None, seed: int | None = None,
                progress: bool = True) -> tuple[Outcome, str, int]:
    """Evaluate trial ``trial_id``'s architecture again into a new row of its study; returns
    the outcome, the study and the seed used."""
    url = db.normalise_url(storage)
    study, cfg, training, latency = plan_rerun(trial_id, url, seed)
    with db.session_scope(url) as s:
        env = store.get_or_create_environment(s).id
        row = new_trial_row(study, training, latency, env)
        s.add(row)
        s.flush()
        row_id = row.id
    out = evaluate(cfg, _RerunRow(url, row_id, trial_id), training=training, latency=latency,
                   storage=url, progress=progress)
    return out, study, training.seed
