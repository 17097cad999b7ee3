"""Where an evaluation's outcome goes: each caller writes one row of its own.

A search reserves its ``trial_results`` row before asking Optuna (so several workers share a
trial budget exactly); an ablation makes the row of a (variant, seed) run when the run starts;
a preset point keeps only a fresh training, in ``preset_trainings``. The pipeline talks to all
of them through :class:`Recorder`.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from .. import store
from ..config import ArchConfig
from ..store import TrialResult, db, trial_latency
from .outcome import Outcome, Prior
from .specs import LatencySpec, TrainingSpec


class Recorder:
    """Stores one evaluation. Only :meth:`write` is required; the rest are hooks."""

    def prior(self, session: Session, cfg: ArchConfig, training: TrainingSpec) -> Prior | None:
        """A result of the caller's own kind to reuse before ``trial_results`` is searched."""
        return None

    def start(self) -> None:
        """Training is about to start (the long part: a row may be committed as running)."""

    def epoch(self, record: dict[str, Any]) -> None:
        """A full training finished an epoch (its ``log.jsonl`` record); rank 0 only."""

    def write(self, session: Session, outcome: Outcome) -> None:
        """Store the outcome, inside the transaction that also stores the architecture."""
        raise NotImplementedError

    def times(self, storage: str, outcome: Outcome) -> None:
        """``store_seconds`` and ``total_seconds`` are known only after the write."""

    def failed(self, reason: str, outcome: Outcome) -> None:
        """The evaluation raised (Ctrl-C, a bug, a backend error): say so in the store.
        ``outcome`` holds what was known by then (architecture, cost, latency, the partial
        curve); its architecture is already stored."""


def new_trial_row(study: str, training: TrainingSpec, latency: LatencySpec | None,
                  environment_id: int) -> TrialResult:
    """A ``running`` ``trial_results`` row for an evaluation with these specs, owned by this
    process (its host and pid let a later run recognise it when this process dies)."""
    return TrialResult(
        study=study, state=store.RUNNING, seed=training.seed, data=training.data.label(),
        recipe=json.dumps(training.recipe, sort_keys=True), train_key=training.key,
        backend=latency.backend if latency else None,
        backend_settings=json.dumps(latency.to_dict(), sort_keys=True) if latency else None,
        environment_id=environment_id, hostname=socket.gethostname(), pid=os.getpid(),
        heartbeat_at=db.utcnow(),
    )


class TrialRow(Recorder):
    """Writes into the ``trial_results`` row ``row_id`` (made beforehand; see subclasses)."""

    def __init__(self, storage: str, row_id: int | None = None) -> None:
        self.url = storage
        self.row_id = row_id

    def write(self, session: Session, outcome: Outcome) -> None:
        now = db.utcnow()
        session.execute(update(TrialResult).where(TrialResult.id == self.row_id).values(
            **outcome.row_values(), finished_at=now, heartbeat_at=now))
        _write_source(session, self.row_id, outcome)
        outcome.id = self.row_id

    def times(self, storage: str, outcome: Outcome) -> None:
        t = outcome.timings
        with db.session_scope(storage) as s:
            s.execute(update(TrialResult).where(TrialResult.id == self.row_id).values(
                store_seconds=round(t["store_seconds"], 6),
                total_seconds=round(t["total_seconds"], 6)))

    def failed(self, reason: str, outcome: Outcome) -> None:
        if self.row_id is None:
            return
        values = {k: v for k, v in outcome.row_values().items() if v is not None}
        values.update(state=store.FAILED, reason=reason, finished_at=db.utcnow())
        with db.session_scope(self.url) as s:
            s.execute(update(TrialResult).where(TrialResult.id == self.row_id).values(**values))
            _write_source(s, self.row_id, outcome)


def _write_source(session: Session, row_id: int | None, outcome: Outcome) -> None:
    """Whether the row's latency was measured or predicted (``trial_latency``)."""
    values = outcome.latency_row()
    if row_id is not None and values is not None:
        trial_latency.put(session, row_id, values)


def prior_from_row(row: Any) -> Prior:
    """A reusable ``trial_results`` row as a :class:`Prior`."""
    metrics = json.loads(row.metrics) if row.metrics else {}
    return Prior("trial_results", row.id, row.study, row.accuracy, row.curve, row.epochs,
                 row.images_per_second, metrics)
