"""Optuna samplers by recipe name, and the constraint values that make them constraint-aware.

Which sampler is the default, and why, is measured by ``benchmarks/search_efficiency.py`` on a
tabular benchmark of our own space (docs/search.md, "How good is the search?").

Constraint-aware sampling: Optuna 5 samplers read a trial's constraints from
``trial.set_constraint`` (a value above 0 breaks the constraint). :func:`set_constraints` stores
the space's limits as such values, so TPE and GP model where the infeasible region lies instead
of only being told "pruned" after the architecture was sampled, and NSGA-II ranks any feasible
trial above every infeasible one.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import optuna

from ..errors import ConfigError, reject_unknown_keys
from .recipe import StudyRecipe
from .space import Constraints


def _violations(cons: Constraints, values: Mapping[str, float]) -> dict[str, float]:
    """Each limit the space sets and ``values`` knows, by name: its relative excess."""
    return {key: float(values[key]) / float(limit) - 1.0
            for limit, key in ((cons.max_params, "params"), (cons.max_flops, "flops"),
                               (cons.max_latency_ms, "latency_ms"))
            if limit is not None and values.get(key) is not None}


def constraint_violations(cons: Constraints, values: Mapping[str, float]) -> list[float]:
    """Relative excess over each limit the space sets and ``values`` knows (<= 0: within it).

    Relative, so params (millions) and latency (milliseconds) weigh alike in the samplers'
    "sum of violations" ranking of infeasible trials.
    """
    return list(_violations(cons, values).values())


def set_constraints(trial: optuna.Trial, cons: Constraints, values: Mapping[str, float]) -> None:
    """Store the violations on the trial (Optuna keeps them as system attributes, which the
    constraint-aware samplers and optuna-dashboard read)."""
    for name, v in _violations(cons, values).items():
        trial.set_constraint(name, v)


def make_sampler(recipe: StudyRecipe, seed: int) -> optuna.samplers.BaseSampler:
    """The recipe's sampler. Optuna calls several of the options we choose on purpose (TPE's
    group and constant_liar, NSGA-III) "experimental" and warns on every worker's start; the
    user chose none of them, so the notice is noise on their terminal."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _sampler(recipe, seed)


def _sampler(recipe: StudyRecipe, seed: int) -> optuna.samplers.BaseSampler:
    opts = dict(recipe.sampler_options)
    name = recipe.sampler
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, **opts)
    if name == "nsga3":
        return optuna.samplers.NSGAIIISampler(seed=seed, **opts)
    if name == "tpe":
        # define-by-run spaces with conditional parameters need multivariate + group to model
        # the joint distribution instead of each parameter on its own
        opts.setdefault("multivariate", True)
        opts.setdefault("group", True)
        opts.setdefault("n_startup_trials", 4)
        # with several workers, running trials count as "bad" points so two workers do not
        # propose the same architecture (harmless with one worker: nothing else is running)
        opts.setdefault("constant_liar", True)
        return optuna.samplers.TPESampler(seed=seed, **opts)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        opts.setdefault("n_startup_trials", 4)
        try:
            import scipy  # noqa: F401 - Optuna's GP sampler optimises its acquisition with it
        except ImportError:
            raise ConfigError("sampler gp needs scipy, which is not installed (uv add scipy); "
                              "use nsga2, tpe or random") from None
        try:
            return optuna.samplers.GPSampler(seed=seed, **opts)
        except (ImportError, ValueError, TypeError) as e:
            raise ConfigError(f"sampler gp cannot run here ({e}); use nsga2, tpe or random") from None
    if name == "nni-evolution":
        return _nni_sampler(recipe, seed, opts)
    raise ConfigError(f"unknown sampler {name!r}")  # pragma: no cover - checked on load


def _nni_sampler(recipe: StudyRecipe, seed: int, opts: dict[str, Any]
                 ) -> optuna.samplers.BaseSampler:
    """NNI's evolution tuner in-process (edgeexplore.search.nni_sampler; nni is an optional extra)."""
    from .nni_sampler import OPTIONS, NNIEvolutionSampler

    reject_unknown_keys(opts, OPTIONS, "sampler nni-evolution")
    weights = opts.get("weights")
    if isinstance(weights, list) and len(weights) != len(recipe.objectives):
        raise ConfigError(f"sampler nni-evolution: weights has {len(weights)} entries for "
                          f"{len(recipe.objectives)} objectives "
                          f"({', '.join(map(str, recipe.objectives))})")
    try:
        return NNIEvolutionSampler(seed=seed, **opts)
    except ImportError as e:
        if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == "nni":
            raise ConfigError("sampler nni-evolution needs the optional extra nni (uv sync "
                              "--extra nni); use nsga2, tpe, gp or random") from None
        raise ConfigError(f"sampler nni-evolution cannot use the installed nni ({e}); use "
                          "nsga2, tpe, gp or random") from None
    except ValueError as e:
        raise ConfigError(f"sampler nni-evolution: {e}") from None
