"""The store: every table of ours beside Optuna's, in one database, and how to open it.

Importing this package declares every table: :mod:`.schema` (architectures, environments, trial
results), :mod:`.latency` (measurements, the lut backend's tables and the learned predictors),
:mod:`.ablations`, :mod:`.preset_trainings`, :mod:`.trainings` (full and longer trainings),
:mod:`.claims` (trainings in progress) and :mod:`.trial_latency` (whether a trial's latency was
measured or predicted). :func:`open_store` returns a :class:`Store` whose schema
is at this version's Alembic revision (:mod:`.migrate`).
"""

from . import (  # noqa: F401  (their tables)
    ablations,
    claims,
    latency,
    preset_trainings,
    trainings,
    trial_latency,
)
from .db import Store, open_store
from .schema import (
    COMPLETE,
    DIVERGED,
    EVALUATED_STATES,
    FAILED,
    INFEASIBLE,
    PRUNED,
    RUNNING,
    STATES,
    Architecture,
    Environment,
    TrialResult,
    completed_curves,
    describe_environment,
    find_reusable,
    get_architecture,
    get_or_create_environment,
    get_trials,
    train_key,
    upsert_architecture,
)

__all__ = [
    "COMPLETE", "DIVERGED", "EVALUATED_STATES", "FAILED", "INFEASIBLE", "PRUNED", "RUNNING",
    "STATES", "Architecture", "Environment", "Store", "TrialResult", "completed_curves",
    "describe_environment", "find_reusable", "get_architecture",
    "get_or_create_environment", "get_trials",
    "open_store", "train_key", "upsert_architecture",
]
