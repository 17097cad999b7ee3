"""The one evaluation pipeline: ArchConfig + training spec + latency spec → cost, latency,
reuse-or-train, store → one :class:`Outcome`.

Searches (:mod:`edgeexplore.search.trial`), ablations (:mod:`edgeexplore.ablation.runner`) and
the presets beside a Pareto front (:mod:`.presets`), full trainings and the longer trainings of
``fidelity`` (:mod:`.trainings`) all evaluate through :func:`evaluate`; they
differ only in the row they write (a :class:`Recorder`) and in search-only hooks (hard limits,
early stopping). :attr:`TrainingSpec.key` is the one reuse key.
"""

from .outcome import INTERRUPTED, Outcome, Prior, failure_reason
from .pipeline import Limits, evaluate
from .presets import place_presets
from .recorders import Recorder, TrialRow, new_trial_row
from .specs import DataSpec, EarlyStop, FullRun, LatencySpec, TrainingSpec
from .trainings import TrainingRecorder, train_full

__all__ = [
    "INTERRUPTED", "DataSpec", "EarlyStop", "FullRun", "LatencySpec", "Limits", "Outcome", "Prior", "Recorder",
    "TrainingRecorder", "TrainingSpec", "TrialRow", "evaluate", "failure_reason", "new_trial_row", "place_presets",
    "train_full",
]
