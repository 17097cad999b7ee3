"""Front membership and hypervolume against Optuna's own study-level answers; knee; plots."""

from __future__ import annotations

import itertools

import numpy as np
import optuna
import pytest
from optuna.visualization._hypervolume_history import _get_hypervolume_history_info

from edgeexplore.analysis.pareto import (
    Objective,
    ReferencePoint,
    analyse,
    hypervolume,
    knee_index,
    pareto_mask,
    plot,
    reference_point,
)
from edgeexplore.errors import EdgeExploreError

optuna.logging.set_verbosity(optuna.logging.WARNING)

CASES = [
    (("max", "min"), 0),
    (("min", "min"), 1),
    (("max", "max"), 2),
    (("max", "min", "min"), 3),
    (("min", "max", "min"), 4),
]


def random_values(n: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, k))
    v[: n // 10] = v[n // 10: 2 * (n // 10)]  # duplicates: Optuna keeps every copy on the front
    v[:, 0] = np.round(v[:, 0], 1)  # ties in one objective
    return v


def optuna_study(values: np.ndarray, objectives: list[Objective]) -> optuna.Study:
    study = optuna.create_study(directions=[
        "maximize" if o.direction == "max" else "minimize" for o in objectives])
    study.add_trials([optuna.trial.create_trial(values=list(map(float, v))) for v in values])
    return study


@pytest.mark.parametrize(("directions", "seed"), CASES)
def test_front_and_hypervolume_equal_optuna(directions, seed):
    objs = [Objective(f"m{i}", d) for i, d in enumerate(directions)]
    values = random_values(300, len(objs), seed)
    study = optuna_study(values, objs)

    mask = pareto_mask(values, objs)
    assert set(np.flatnonzero(mask)) == {t.number for t in study.best_trials}

    ref_loss = reference_point(values, objs)
    ref_values = ref_loss * np.array([o.sign for o in objs])  # Optuna takes it unsigned
    ours = hypervolume(values, objs, ref_loss)
    theirs = _get_hypervolume_history_info(study, ref_values).values[-1]
    assert ours == pytest.approx(theirs, rel=1e-9)

    result = analyse(values, objs)
    assert result.hypervolume == pytest.approx(theirs, rel=1e-9)
    assert list(result.on_front) == list(mask)


def brute_force_hypervolume(loss: np.ndarray, ref: np.ndarray) -> float:
    """Inclusion-exclusion over every subset: exact, independent of Optuna, tiny inputs only."""
    total = 0.0
    for r in range(1, len(loss) + 1):
        for subset in itertools.combinations(range(len(loss)), r):
            corner = loss[list(subset)].max(axis=0)
            total += (-1) ** (r + 1) * np.prod(np.clip(ref - corner, 0, None))
    return float(total)


@pytest.mark.parametrize("k", [2, 3])
def test_hypervolume_brute_force(k):
    rng = np.random.default_rng(10 + k)
    objs = [Objective("a", "max")] + [Objective(f"b{i}", "min") for i in range(k - 1)]
    for _ in range(5):
        values = rng.uniform(0, 1, size=(9, k))
        loss = values * np.array([o.sign for o in objs])
        ref = reference_point(values, objs)
        assert hypervolume(values, objs) == pytest.approx(brute_force_hypervolume(loss, ref))


def test_reference_point_rule():
    objs = [Objective("accuracy", "max"), Objective("latency_ms", "min")]
    values = np.array([[0.6, 10.0], [0.8, 30.0], [0.7, 20.0]])
    # loss space: accuracy → -accuracy; worst -0.6, range 0.2; latency worst 30, range 20
    assert reference_point(values, objs) == pytest.approx([-0.6 + 0.02, 30.0 + 2.0])
    one = np.array([[0.5, 4.0]])  # zero range: 10% of the magnitude
    assert reference_point(one, objs) == pytest.approx([-0.5 + 0.05, 4.4])
    result = analyse(values, objs)
    assert result.reference_values == pytest.approx([0.58, 32.0])
    # box from the ideal point (-0.8, 10) to the reference: (0.22 × 22)
    assert result.hypervolume_normalised == pytest.approx(result.hypervolume / (0.22 * 22))


def test_knee_is_the_bulge():
    objs = [Objective("accuracy", "max"), Objective("latency_ms", "min")]
    # a front with an obvious elbow at (0.78, 5) and a dominated point
    values = np.array([[0.50, 1.0], [0.70, 3.0], [0.78, 5.0], [0.80, 15.0], [0.81, 30.0],
                       [0.60, 20.0]])
    assert knee_index(values, objs) == 2
    assert list(pareto_mask(values, objs)) == [True] * 5 + [False]
    # two points: the one closest to the ideal point after normalisation (a tie → the first)
    assert knee_index(values[[0, 4]], objs) in (0, 1)
    # three objectives: the elbow of a convex front
    objs3 = objs + [Objective("params", "min")]
    v3 = np.array([[0.5, 1, 1], [0.8, 30, 1], [0.8, 1, 30], [0.75, 4, 4], [0.6, 20, 20]])
    assert knee_index(v3, objs3) == 3


def test_errors():
    objs = [Objective("a", "max"), Objective("b", "min")]
    with pytest.raises(EdgeExploreError, match="no complete trials"):
        analyse(np.zeros((0, 2)), objs)
    with pytest.raises(EdgeExploreError, match="2 or 3 objectives"):
        analyse(np.zeros((3, 1)), objs[:1])
    with pytest.raises(EdgeExploreError, match="finite"):
        analyse(np.array([[np.nan, 1.0]]), objs)


def test_plots(tmp_path):
    objs = [Objective("accuracy", "max"), Objective("latency_ms", "min")]
    values = random_values(60, 2, 7)
    values[:, 0] = 0.6 + 0.05 * values[:, 0]
    values[:, 1] = np.abs(values[:, 1]) * 5 + 1
    result = analyse(values, objs, groups=["s1"] * 30 + ["s2"] * 30)
    result.references = [ReferencePoint("edgevit_xxs", {"accuracy": None, "latency_ms": 4.0}),
                         ReferencePoint("edgevit_xs", {"accuracy": 0.62, "latency_ms": 6.0})]
    png = plot(result, tmp_path / "f.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = plot(result, tmp_path / "f.html", title="front <&>")
    text = html.read_text()
    assert "<svg" in text and "front &lt;&amp;&gt;" in text and "http" not in text.split(
        "<svg")[0]
    three = analyse(np.c_[values, np.arange(60.0)], objs + [Objective("params", "min")])
    assert plot(three, tmp_path / "f3.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(EdgeExploreError, match="use a .png"):
        plot(result, tmp_path / "f.gif")


def test_front_members_within_noise_are_marked():
    from edgeexplore.analysis.pareto import pareto_mask, within_noise

    objs = [Objective("accuracy", "max"), Objective("latency_ms", "min")]
    # b beats a by 0.005 accuracy at 0.1 ms more: inside a 0.01 spread, a matches it.
    # c is far more accurate than anything as fast as it: its place holds.
    values = np.array([[0.600, 1.0], [0.605, 1.1], [0.700, 3.0], [0.500, 0.5]])
    mask = pareto_mask(values, objs)
    assert mask.tolist() == [True, True, True, True]
    noisy = within_noise(values, objs, mask, {"accuracy": 0.01})
    assert noisy.tolist() == [False, True, False, False]
    # no spread given: nothing is within noise
    assert not within_noise(values, objs, mask, {}).any()
