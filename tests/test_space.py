"""Search-space files: loading, errors that name file/key/problem, sampling, membership."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import optuna
import pytest

from edgeexplore.config import BLOCKS, PRESETS
from edgeexplore.errors import ConfigError
from edgeexplore.search.recipe import StudyRecipe
from edgeexplore.search.space import SearchSpace, list_spaces, parse_amount

ROOT = Path(__file__).resolve().parents[1]
SPACES = ROOT / "search_spaces"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


MINIMAL = """
stages:
  - {depth: 1, width: 32, block: lgl, sample_rate: 4}
  - {depth: 1, width: 64, heads: 2, block: lgl, sample_rate: 2}
  - {depth: [1, 2], width: 128, heads: 4, block: lgl, sample_rate: 2}
  - {depth: 1, width: 256, heads: 8, block: lgl}
"""


def test_presets_lie_inside_edgevit_space():
    space = SearchSpace.load(SPACES / "edgevit.yaml")
    for name in ("edgevit_xxs", "edgevit_xs", "edgevit_s"):
        cfg = PRESETS[name]
        assert space.contains(cfg), f"{name}: {space.why_not(cfg)}"
        params = space.params_for(cfg)
        # replaying those parameters through suggest gives back the very same network
        trial = optuna.trial.FixedTrial(params)
        assert space.suggest(trial).hash == cfg.hash


def test_options_that_change_nothing_are_not_asked():
    """A sampler at sample rate 1, or LocalAgg's kernel under LSA, would only make the search
    train the same network twice under two names."""
    space = SearchSpace.load(SPACES / "edgevit-ablations.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen_rate1 = seen_lsa = 0
    for _ in range(60):
        trial = study.ask()
        cfg = space.suggest(trial, num_classes=10)
        for i, st in enumerate(cfg.stages, 1):
            asked = {k.split(".")[-1] for k in trial.params if k.startswith(f"stage{i}.lgl.")}
            if st.block != "lgl":
                continue
            if st.sample_rate == 1:
                seen_rate1 += 1
                assert not asked & {"sampler", "local_prop"}, (i, trial.params)
            if st.opts["local_agg"] == "lsa":
                seen_lsa += 1
                assert "agg_kernel" not in asked, (i, trial.params)
            else:
                assert "window" not in asked, (i, trial.params)
        # params_for gives exactly the asked parameters, and they rebuild the same network
        assert space.params_for(cfg) == {k: v for k, v in trial.params.items()}
        assert space.suggest(optuna.trial.FixedTrial(trial.params), num_classes=10).hash == cfg.hash
        study.tell(trial, 0.0)
    assert seen_rate1 and seen_lsa  # the space exercised both cases


def test_outside_configs_are_rejected_with_reason():
    space = SearchSpace.load(SPACES / "edgevit.yaml")
    deep = PRESETS["edgevit_xxs"].with_stage(2, depth=12)
    assert not space.contains(deep)
    assert "depth 12" in space.why_not(deep)
    assert "resolution" in space.why_not(PRESETS["edgevit_xxs"].replace(resolution=(256, 256)))


def test_every_shipped_space_loads_and_samples_valid_configs():
    files = list_spaces(SPACES)
    assert {p.stem for p in files} >= {"edgevit", "edgevit-ablations", "edgevit-tiny"}
    for path in files:
        space = SearchSpace.load(path)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(20):
            trial = study.ask()
            cfg = space.suggest(trial, num_classes=10)
            assert space.contains(cfg), f"{path.name}: {space.why_not(cfg)}"
            assert cfg.num_classes == 10
            study.tell(trial, 0.0)


def test_ablation_space_covers_every_block_and_option():
    space = SearchSpace.load(SPACES / "edgevit-ablations.yaml")
    for st in space.stages:
        assert {b.name for b in st.blocks} >= {"lgl", "sra", "conv"}
        for choice in st.blocks:
            spec = BLOCKS[choice.name]
            for key, option in spec.options.items():
                if option.choices is not None:
                    assert set(choice.options.get(key, ())) == set(option.choices), (
                        f"stage {st.index + 1} {choice.name}.{key}"
                    )


def test_define_by_run_only_asks_relevant_parameters():
    space = SearchSpace.load(SPACES / "edgevit-ablations.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen_conv = False
    for _ in range(40):
        trial = study.ask()
        cfg = space.suggest(trial)
        for i, s in enumerate(cfg.stages, 1):
            if s.block != "lgl":
                assert f"stage{i}.lgl.sampler" not in trial.params
            if s.block == "conv":
                seen_conv = True
                assert f"stage{i}.sample_rate" not in trial.params
        study.tell(trial, 0.0)
    assert seen_conv


def test_size_and_rows():
    space = SearchSpace.from_dict({"stages": [
        {"depth": [1, 2], "width": 32, "block": "lgl"},
        {"depth": 1, "width": 64, "block": "lgl"},
        {"depth": 1, "width": 64, "block": ["lgl", "conv"]},
        {"depth": 1, "width": 64, "block": "lgl"},
    ], "resolution": 64})
    assert space.size() == 4
    assert ("stage1.depth", "{1, 2}") in space.rows()
    # options count only where they change the network: the sampler at rate 2, not at rate 1
    sparse = SearchSpace.from_dict({"stages": [
        {"depth": 1, "width": 32, "block": {"lgl": {"sampler": ["pick", "avg"]}},
         "sample_rate": [1, 2]},
        {"depth": 1, "width": 64, "block": "lgl"},
        {"depth": 1, "width": 64, "block": {"lgl": {"local_agg": ["conv", "lsa"],
                                                   "agg_kernel": [3, 5]}}, "sample_rate": 2},
        {"depth": 1, "width": 64, "block": "lgl"},
    ], "resolution": 64})
    # rate 1 | rate 2 x 2 samplers; conv x 2 kernels | lsa (no kernel)
    assert sparse.size() == (1 + 2) * (2 + 1)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("stages: [a, b\n  c: d", "malformed YAML at line"),
        ("stages: []\nbogus: 1", "unknown key 'bogus'"),
        (MINIMAL.replace("depth: [1, 2]", "depth: {low: 3, high: 1}"),
         "stages[2].depth: empty range, low 3 is greater than high 1"),
        (MINIMAL.replace("depth: [1, 2]", "depth: []"), "stages[2].depth: the list of choices is empty"),
        (MINIMAL.replace("width: 128", "width: 130"), "stages[2]: impossible: no width"),
        (MINIMAL.replace("block: lgl}", "block: lgl, colour: red}", 1),
         "stages[3]: unknown key 'colour'"),
        (MINIMAL.replace("heads: 2, block: lgl", "heads: 2, block: {lgl: {sampler: [best]}}"),
         "stages[1].block.lgl.sampler"),
        (MINIMAL.replace("heads: 2, block: lgl", "heads: 2, block: {lgl: {colour: [1]}}"),
         "has no option 'colour'"),
        (MINIMAL.replace("heads: 2, block: lgl", "heads: 2, block: transformer"),
         "unknown block 'transformer'"),
        (MINIMAL + "constraints: {max_params: lots}", "constraints.max_params"),
        (MINIMAL + "resolution: 100", "resolution: input 100"),
        ("stages: [{depth: 1, width: 8, block: lgl}]", "list of 4 stage"),
    ],
)
def test_bad_space_files_name_file_key_and_problem(tmp_path, text, needle):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        SearchSpace.load(path)
    message = str(err.value)
    assert str(path) in message
    assert needle in message


def test_missing_space_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        SearchSpace.load(tmp_path / "nope.yaml")


def test_binary_file_given_as_a_space(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"\x80\x02\xff binary")
    with pytest.raises(ConfigError, match="weights.pth is not a text"):
        SearchSpace.load(path)


def test_parse_amount():
    assert parse_amount("5M", "x") == 5e6
    assert parse_amount("0.6G", "x") == 6e8
    assert parse_amount(1200, "x") == 1200.0
    with pytest.raises(ConfigError):
        parse_amount("many", "x")


def test_constraints_report_reasons():
    space = SearchSpace.load(SPACES / "edgevit-tiny.yaml")
    assert space.constraints.check_cost(3_000_000, 1) is not None
    assert "max_params" in space.constraints.check_cost(3_000_000, 1)
    assert space.constraints.check_cost(10_000, 1_000_000) is None


# -- study recipes -------------------------------------------------------------------------------

def test_shipped_recipes_load():
    for name in ("quickstart", "cifar10"):
        recipe = StudyRecipe.load(ROOT / "studies" / f"{name}.yaml")
        assert recipe.sampler == "tpe"
        assert recipe.objectives[0].name == "accuracy"
        assert recipe.objectives[0].direction == "max"
        assert recipe.objectives[1].name == "latency_ms"
        assert recipe.objectives[1].direction == "min"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("space: edgevit-tiny\nobjectives: [accuracy, speed]", "unknown objective 'speed'"),
        ("space: edgevit-tiny\nobjectives: [{accuracy: up}]", "direction of accuracy"),
        ("space: edgevit-tiny\nsampler: annealing", "unknown sampler 'annealing'"),
        ("space: edgevit-tiny\nproxy: {epochs: 0}", "proxy: "),
        ("space: edgevit-tiny\nproxy: {epoch: 3}", "proxy: "),
        ("space: nowhere", "search space 'nowhere' not found"),
        ("space: edgevit-tiny\nseeds: 3", "unknown key 'seeds'"),
        ("space: edgevit-tiny\ndata: {spec: synthetic, subset: -1}", "data.subset"),
        ("space: [oops", "malformed YAML"),
    ],
)
def test_bad_recipes(tmp_path, text, needle):
    path = _write(tmp_path, text, "study.yaml")
    with pytest.raises(ConfigError) as err:
        StudyRecipe.load(path)
    assert needle in str(err.value)
    assert "study.yaml" in str(err.value) or "not found" in str(err.value)


def test_single_objective_defaults_to_tpe(tmp_path):
    path = _write(tmp_path, "space: edgevit-tiny\nobjectives: [accuracy]", "one.yaml")
    recipe = StudyRecipe.load(path)
    assert recipe.sampler == "tpe"
    assert len(recipe.objectives) == 1


@pytest.mark.parametrize("sampler", ["nsga2", "nsga3", "tpe", "random", "gp", "nni-evolution"])
def test_every_sampler_drives_the_space(tmp_path, sampler):
    from edgeexplore.search.study import make_sampler

    path = _write(tmp_path, f"space: edgevit-tiny\nsampler: {sampler}", "s.yaml")
    recipe = StudyRecipe.load(path)
    if sampler == "gp" and importlib.util.find_spec("scipy") is None:
        with pytest.raises(ConfigError, match="scipy"):
            make_sampler(recipe, seed=0)
        return
    if sampler == "nni-evolution" and importlib.util.find_spec("nni") is None:
        with pytest.raises(ConfigError, match="optional extra nni"):
            make_sampler(recipe, seed=0)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler_ = make_sampler(recipe, seed=0)
    # Optuna's "experimental" notices about options we chose are not the user's business
    assert not [w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler_)
    for _ in range(6):
        trial = study.ask()
        cfg = recipe.space.suggest(trial, num_classes=10)
        study.tell(trial, [sum(cfg.depths) / 10, sum(cfg.widths) / 100])
    assert len(study.best_trials) >= 1
