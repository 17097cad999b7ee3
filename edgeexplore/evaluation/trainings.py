"""The recorder of long trainings: one ``trainings`` row per run, followed epoch by epoch.

``edgeexplore train`` (kind ``full``) and ``edgeexplore fidelity`` (a longer proxy, kind
``proxy``) evaluate through the pipeline with :class:`TrainingRecorder`. Its :meth:`prior` is
the reuse rule: the latest complete row of the same architecture and spec key. Under torchrun
every rank runs the pipeline (they must agree on reusing or training) but only rank 0 writes.
"""

from __future__ import annotations

import json
import os
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from .. import store
from ..config import ArchConfig
from ..store import db
from ..store.trainings import Training, find_complete, find_unfinished
from .outcome import Outcome, Prior
from .recorders import Recorder
from .specs import DataSpec, FullRun, TrainingSpec


def _rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _curve_point(record: dict[str, Any]) -> dict[str, Any]:
    """The per-epoch numbers kept in the row (the full record stays in log.jsonl)."""
    val = record.get("val_ema") or record.get("val") or {}
    return {"epoch": record["epoch"], "train_loss": record.get("train_loss"),
            **{k: v for k, v in val.items() if k.startswith("top")}}


def prior_from_training(row: Training) -> Prior:
    return Prior("trainings", row.id, None, row.best_top1, row.curve, row.epochs_done,
                 metrics={"final_top1": row.final_top1, "checkpoint": row.checkpoint,
                          "output": row.output})


class TrainingRecorder(Recorder):
    """Writes one ``trainings`` row for ``cfg`` trained with ``spec``. ``output`` is the run's
    folder (full trainings); ``resume`` continues the unfinished row of that training."""

    def __init__(self, storage: str, cfg: ArchConfig, spec: TrainingSpec,
                 output: str | None = None, resume: bool = False) -> None:
        self.url, self.cfg, self.spec = db.normalise_url(storage), cfg, spec
        self.output, self.resume = output, resume
        self.row_id: int | None = None
        self.curve: list[dict[str, Any]] = []

    def prior(self, session: Session, cfg: ArchConfig, training: TrainingSpec) -> Prior | None:
        row = find_complete(session, cfg.hash, training.key)
        return prior_from_training(row) if row is not None else None

    def start(self) -> None:
        if not _rank0():
            return
        with db.session_scope(self.url) as s:
            row = find_unfinished(s, self.cfg.hash, self.spec.key) if self.resume else None
            if row is None:
                self._new_row(s)
            else:
                self.curve = json.loads(row.curve or "[]")
                row.state, row.reason, row.finished_at = store.RUNNING, None, None
                row.environment_id = store.get_or_create_environment(s).id
                self.row_id = row.id

    def epoch(self, record: dict[str, Any]) -> None:
        if self.row_id is None:
            return
        self.curve.append(_curve_point(record))
        with db.session_scope(self.url) as s:
            s.execute(update(Training).where(Training.id == self.row_id).values(
                epochs_done=record["epoch"], curve=json.dumps(self.curve)))

    def write(self, session: Session, outcome: Outcome) -> None:
        if not _rank0() or (outcome.prior is not None and outcome.prior.table == "trainings"):
            return
        if self.row_id is None:  # reused from a trial_results row: keep a copy under this key
            self._new_row(session)
        session.execute(update(Training).where(Training.id == self.row_id).values(
            state=outcome.state, reason=outcome.reason, finished_at=db.utcnow(),
            train_seconds=outcome.timings.get("train_seconds"), **self._results(outcome)))
        outcome.id = self.row_id

    def _new_row(self, session: Session) -> None:
        # the row is written when training starts, before the pipeline stores the architecture
        store.upsert_architecture(session, self.cfg)
        session.flush()
        row = Training(arch_hash=self.cfg.hash, kind=self.spec.kind, spec_key=self.spec.key,
                       recipe=json.dumps(self.spec.recipe, sort_keys=True),
                       data=json.dumps(self.spec.data.to_dict(), sort_keys=True),
                       seed=self.spec.seed, epochs=self.spec.epochs, epochs_done=0,
                       state=store.RUNNING, output=self.output,
                       environment_id=store.get_or_create_environment(session).id)
        session.add(row)
        session.flush()
        self.row_id = row.id

    def _results(self, outcome: Outcome) -> dict[str, Any]:
        full = outcome.metrics.get("full")
        if full is None:  # a proxy training: final accuracy and the best epoch's
            best = outcome.metrics.get("best_accuracy", outcome.accuracy)
            return {"epochs_done": outcome.epochs, "final_top1": outcome.accuracy,
                    "best_top1": best, "curve": outcome.curve}
        k = full["top_k"]
        best, final = full["best"], full.get("final") or {}

        def frac(d: dict[str, Any], key: str) -> float | None:
            return None if d.get(key) is None else d[key] / 100

        from ..training.checkpoint import BEST

        ckpt = os.path.join(full["output"], BEST) if best.get("epoch") else None
        return {"epochs_done": full["epochs_done"], "best_top1": frac(best, "top1"),
                "best_top5": frac(best, f"top{k}"), "best_epoch": best.get("epoch") or None,
                "final_top1": frac(final, "top1"), "final_top5": frac(final, f"top{k}"),
                "checkpoint": ckpt, "output": full["output"]}

    def failed(self, reason: str, outcome: Outcome) -> None:
        if self.row_id is None:
            return
        with db.session_scope(self.url) as s:
            s.execute(update(Training).where(Training.id == self.row_id).values(
                state=store.FAILED, reason=reason, finished_at=db.utcnow()))


def train_full(cfg: ArchConfig, spec: TrainingSpec, run: FullRun, storage: str | None,
               force: bool = False) -> Outcome:
    """Train ``cfg`` (see :func:`as_trained`) in full into ``run.output`` and record it, or
    reuse a complete training with the same spec (unless ``force``); a ``run.resume`` continues
    the recorded run."""
    from .pipeline import evaluate

    url = db.normalise_url(storage)
    recorder = TrainingRecorder(url, cfg, spec, output=run.output, resume=run.resume)
    return evaluate(cfg, recorder, training=spec, storage=url, run=run,
                    force=force or run.resume)


def as_trained(cfg: ArchConfig, spec: TrainingSpec) -> ArchConfig:
    """``cfg`` at the input size and class count it is trained with (the trainer sets them from
    the recipe and the data), so the row names the network trained: the same hash as a trial
    searched at that size on that data, or a preset drawn beside such a study's front."""
    from ..training import loaders

    classes = loaders.open_splits(spec.data.spec, spec.seed).num_classes
    size = spec.recipe.get("resolution")
    return cfg.replace(num_classes=classes, resolution=tuple(size) if size else cfg.resolution)


def recorded_run(output: str, storage: str | None) -> tuple[ArchConfig, TrainingSpec] | None:
    """The architecture and spec of the unfinished training recorded for folder ``output``
    (None when the run was started without a store)."""
    from sqlalchemy import select

    with db.session_scope(db.normalise_url(storage)) as s:
        row = s.scalar(select(Training).where(Training.output == output,
                                              Training.state != store.COMPLETE)
                       .order_by(Training.id.desc()).limit(1))
        if row is None:
            return None
        arch = store.get_architecture(s, row.arch_hash)
        cfg = ArchConfig.from_json(arch.config)
        spec = TrainingSpec(json.loads(row.recipe), DataSpec.from_dict(json.loads(row.data)),
                            row.seed, row.kind)
    return cfg, spec
