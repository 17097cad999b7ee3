"""The tabular benchmark's pieces: enumerating a space, looking trials up, samplers by recipe,
constraint-aware sampling (edgeexplore.search.tabular, edgeexplore.search.samplers)."""

from __future__ import annotations

import warnings

import optuna
import pytest

from edgeexplore.objectives import Objective
from edgeexplore.search.recipe import SAMPLERS, StudyRecipe
from edgeexplore.search.samplers import make_sampler
from edgeexplore.search.space import SearchSpace
from edgeexplore.search.tabular import Entry, Table, TabularObjective, enumerate_space, run_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "name": "tiny-tabular", "resolution": 32, "head_dim": [8, 16],
    "defaults": {"mlp_ratio": 2.0, "block": "lgl"},
    "stages": [
        {"depth": 1, "heads": 1, "sample_rate": 1, "block": ["lgl", "conv"]},
        {"depth": 1, "heads": [2, 4], "sample_rate": 1},
        {"depth": [1, 2], "heads": [2, 4], "sample_rate": 1, "block": ["lgl", "conv"]},
        {"depth": 1, "heads": [4, 8], "sample_rate": 1},
    ],
}
OBJECTIVES = (Objective("accuracy", "max"), Objective("latency_ms", "min"))
# a recipe only lends its sampler here; the trials sample the tiny space above


def _space(**constraints) -> SearchSpace:
    return SearchSpace.from_dict({**SPACE, "constraints": constraints})


def _size(cfg) -> float:
    """A stand-in for params (counting real ones would trace 128 models)."""
    return float(sum(s.width ** 2 * s.depth for s in cfg.stages))


def _table(space: SearchSpace) -> Table:
    """Made-up results: accuracy and latency both grow with size, conv stages are faster."""
    table = Table()
    for cfg in enumerate_space(space):
        size = _size(cfg)
        convs = sum(s.block == "conv" for s in cfg.stages)
        table.entries[cfg.hash] = Entry({"accuracy": size / (size + 5000.0) - 0.02 * convs,
                                         "latency_ms": size / 1000.0 + 1.0 - 0.2 * convs,
                                         "params": size})
    return table


def test_enumeration_lists_every_architecture_once():
    space = _space()
    cfgs = list(enumerate_space(space))
    # head size 2 x stage1 2 x stage2 2 x stage3 (2 depths x 2 blocks x 2 heads) x stage4 2
    assert len(cfgs) == 128
    assert len({c.hash for c in cfgs}) == 128
    assert all(space.contains(c) for c in cfgs)


def test_a_trial_looks_its_result_up():
    space = _space()
    table = _table(space)
    recipe = StudyRecipe.from_dict({"space": "edgevit-tiny", "sampler": "tpe",
                                    "objectives": ["accuracy", "latency_ms"]})
    study = run_sampler(lambda seed: make_sampler(recipe, seed),
                        TabularObjective(space, table, OBJECTIVES), trials=12, seed=0)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 12
    for t in done:
        entry = table.entries[t.user_attrs["arch_hash"]]
        assert t.values == [entry.values["accuracy"], entry.values["latency_ms"]]


def test_an_architecture_missing_from_the_table_is_pruned_and_not_counted():
    space = _space()
    full = _table(space)
    half = Table(dict(list(full.entries.items())[:64]))
    study = run_sampler(lambda seed: optuna.samplers.RandomSampler(seed=seed),
                        TabularObjective(space, half, OBJECTIVES), trials=10, seed=1)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    pruned = study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    assert len(done) == 10 and pruned
    assert all(t.user_attrs["arch_hash"] in half.entries for t in done)
    assert all(t.user_attrs["arch_hash"] not in half.entries for t in pruned)


@pytest.mark.parametrize("name", SAMPLERS)
def test_each_sampler_is_selectable_from_a_recipe_and_runs_on_the_table(name):
    if name == "nni-evolution":
        pytest.importorskip("nni", reason="nni is an optional extra (uv sync --extra nni)")
    space = _space()
    recipe = StudyRecipe.from_dict({"space": "edgevit-tiny", "sampler": {"name": name},
                                    "objectives": ["accuracy", "latency_ms"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-feature notices of nsga3 / gp / group
        sampler = make_sampler(recipe, 0)
        study = run_sampler(lambda seed: sampler, TabularObjective(space, _table(space),
                                                                   OBJECTIVES), trials=8, seed=0)
    assert recipe.sampler == name
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 8


def _proposals(sampler: str, seed: int) -> list[optuna.trial.FrozenTrial]:
    space = _space(max_params=7000)  # about half of the table is over it
    recipe = StudyRecipe.from_dict({"space": "edgevit-tiny", "sampler": sampler,
                                    "objectives": ["accuracy", "latency_ms"]})
    objective = TabularObjective(space, _table(space), OBJECTIVES, constraint_aware=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_sampler(lambda s: make_sampler(recipe, s), objective, trials=20,
                           seed=seed).trials


def test_constraint_aware_trials_carry_their_violations_and_steer_tpe_away():
    space = _space(max_params=7000)
    table = _table(space)
    share = sum(e.values["params"] > 7000 for e in table.entries.values()) / len(table)
    assert 0.3 < share < 0.7
    tpe = [_proposals("tpe", s) for s in range(6)]
    rnd = [_proposals("random", s) for s in range(6)]
    for t in tpe[0]:
        over = table.entries[t.user_attrs["arch_hash"]].values["params"] > 7000
        # Optuna's samplers read these (a value above 0 breaks the limit)
        assert (t.constraints["params"] > 0) == over
        assert (t.state == optuna.trial.TrialState.PRUNED) == over
    def infeasible(runs):
        return sum(bool(t.user_attrs.get("infeasible")) for r in runs for t in r)
    # random keeps proposing over-limit architectures at their share; TPE learns to avoid them
    assert infeasible(tpe) < 0.6 * infeasible(rnd)


def test_a_continuous_range_cannot_be_tabulated():
    from edgeexplore.search.tabular import NotFinite

    space = SearchSpace.from_dict({**SPACE, "defaults": {"mlp_ratio": {"low": 2.0, "high": 4.0},
                                                         "block": "lgl"}})
    with pytest.raises(NotFinite, match="continuous range"):
        list(enumerate_space(space))
