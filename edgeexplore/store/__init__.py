"""The store: every table of ours beside Optuna's, in one database, and how to open it."""

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
    count_trials,
    describe_environment,
    find_reusable,
    get_architecture,
    get_or_create_environment,
    get_trial,
    get_trials,
    list_studies,
    train_key,
    trials_dataframe,
    upsert_architecture,
)

__all__ = [
    "COMPLETE", "DIVERGED", "EVALUATED_STATES", "FAILED", "INFEASIBLE", "PRUNED", "RUNNING",
    "STATES", "Architecture", "Environment", "TrialResult", "completed_curves", "count_trials",
    "describe_environment", "find_reusable", "get_architecture", "get_or_create_environment",
    "get_trial", "get_trials", "list_studies", "train_key", "trials_dataframe",
    "upsert_architecture",
]
