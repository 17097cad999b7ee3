"""Presets beside a Pareto front, evaluated through the pipeline like the trials were.

:func:`edgeexplore.analysis.query.pareto_front` only reads: it says which presets to draw, at
which input size and class count, with which backend settings and training spec (those of the
trials), and fills in what stored trials already know. :func:`place_presets` evaluates the rest
(cost, latency, and with ``train=True`` a proxy training) and fills the points in place. A
training is kept in ``preset_trainings`` under the spec's key, so the next plot reuses it, and
a search trial or ablation run of the same network with the same spec is reused as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import EdgeExploreError
from ..store import db
from ..store.preset_trainings import PresetTraining, find
from .outcome import Outcome, Prior
from .pipeline import evaluate
from .recorders import Recorder
from .specs import LatencySpec, TrainingSpec

#: objectives only a latency backend can give
TIMED = frozenset({"latency_ms", "latency_p90_ms", "latency_cv", "energy_mj"})


class PresetRecorder(Recorder):
    """Keeps a preset's fresh training (not a trial: it belongs to no study's front)."""

    def __init__(self, preset: str, study: str, training: TrainingSpec | None) -> None:
        self.preset, self.study, self.training = preset, study, training

    def prior(self, session: Any, cfg: Any, training: TrainingSpec) -> Prior | None:
        row = find(session, cfg.hash, training.key)
        if row is None:
            return None
        return Prior("preset_trainings", row.id, row.study, row.accuracy, row.curve)

    def write(self, session: Any, outcome: Outcome) -> None:
        if self.training is None or outcome.reused or outcome.accuracy is None:
            return
        db.add_once(session, PresetTraining(
            preset=self.preset, arch_hash=outcome.arch_hash, train_key=self.training.key,
            study=self.study, accuracy=outcome.accuracy, curve=outcome.curve,
            train_seconds=outcome.timings.get("train_seconds", 0.0),
        ), arch_hash=outcome.arch_hash, train_key=self.training.key)


def place_presets(requests: Sequence[Any], train: bool = False, storage: str | None = None
                  ) -> None:
    """Evaluate each preset request (``ParetoResult.preset_requests``) that stored trials did not
    answer, and fill its point's values and note in place."""
    for req in requests:
        if req.stored_trial is not None:
            continue
        values = req.point.values
        notes = []
        latency = None
        if TIMED & set(values):
            if req.backend is None:
                notes.append("latency not measured: the trials name no backend")
            else:
                latency = LatencySpec.from_settings(req.backend, req.backend_settings)
        training = _training_spec(req) if train and "accuracy" in values else None
        study = req.training["study"] if training else ""
        out = evaluate(req.config, PresetRecorder(req.point.name, study, training),
                       training=training, latency=latency, storage=storage)
        for name in values:
            if values[name] is None:  # full_accuracy comes from the store, never from here
                values[name] = out.value(name)
        if "accuracy" in values:
            notes.append(_accuracy_note(out, training, study))
        req.point.note = "; ".join(notes)


def _training_spec(req: Any) -> TrainingSpec:
    t = req.training
    if t is None:
        raise EdgeExploreError(
            "--train-presets needs a study with a stored proxy recipe (complete trials)")
    if not (t.get("data") or {}).get("spec"):
        raise EdgeExploreError(
            f"study {t['study']!r} does not record its data; cannot train presets")
    return TrainingSpec.proxy(t["recipe"], t["data"], t["seed"])


def _accuracy_note(out: Outcome, training: TrainingSpec | None, study: str) -> str:
    if training is None:
        return "accuracy not trained (use --train-presets)"
    if out.prior is not None:
        return f"accuracy trained earlier with study {out.prior.study}'s recipe"
    if out.accuracy is None:
        return f"accuracy not known: training {out.state} ({out.reason})"
    return f"accuracy trained now with study {study}'s recipe"
