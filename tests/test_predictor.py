"""The learned latency predictor: features, diverse selection, model choice, storage, the CLI."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeexplore.cli import cli
from edgeexplore.errors import EdgeExploreError
from edgeexplore.latency.predictor import (
    Features,
    arch_features,
    config_features,
    feature_names,
    fit_predictor,
    select_diverse,
)
from edgeexplore.search.space import random_configs, resolve_space
from edgeexplore.store.db import open_store

TOOLS = Path(__file__).parent / "latency_tools"


@pytest.fixture(scope="module")
def tiny_archs():
    return random_configs(resolve_space("edgevit-tiny"), 24, seed=1)


def synthetic(n: int) -> tuple[list[Features], list[float]]:
    """Features whose latency is an exact non-negative sum: what ``additive`` should recover."""
    feats, ys = [], []
    for i in range(n):
        v = {k: 0.0 for k in feature_names()}
        v.update(flops_lgl=1e6 * (1 + i % 7), flops_conv=2e6 * (1 + (i * 3) % 5),
                 activations=1e5 * (1 + (i * 5) % 11), modules=20 + i, flops=3e6, pixels=4096)
        feats.append(Features(str(i), v))
        ys.append(1.0 + 2e-6 * v["flops_lgl"] + 1e-6 * v["flops_conv"] + 0.01 * v["modules"])
    return feats, ys


def test_features_of_an_architecture(tiny_archs):
    cfg = tiny_archs[0]
    f = arch_features(cfg)
    h, w = cfg.resolution
    assert f.arch_hash == cfg.hash and f.values["pixels"] == h * w
    assert f.values["tokens_s1"] == (h // 4) * (w // 4) and f.values["width_s4"] == cfg.widths[3]
    # the per-kind FLOPs split the stages' FLOPs, and the stages are most of the total
    kinds = sum(v for k, v in f.values.items() if k.startswith("flops_") and k[6:] in
                {s.block for s in cfg.stages})
    assert kinds == pytest.approx(sum(f.values[f"flops_s{i}"] for i in range(1, 5)))
    assert 0 < kinds < f.values["flops"] and f.values["modules"] > 10


def test_diverse_selection_covers_the_extremes_and_keeps_what_was_chosen(tiny_archs):
    feats = [config_features(c) for c in tiny_archs]
    picked = select_diverse(feats, 6)
    assert len(set(picked)) == 6
    work = [sum(v for k, v in f.values.items() if k.startswith("work_")) for f in feats]
    # farthest-point reaches the smallest or the largest network, random picks often do not
    assert work.index(max(work)) in picked or work.index(min(work)) in picked
    assert select_diverse(feats, 6, chosen=[5, 2])[:2] == [5, 2]
    with pytest.raises(EdgeExploreError, match="cannot choose 30 architectures out of 24"):
        select_diverse(feats, 30)


def test_the_additive_model_recovers_an_additive_latency_and_reports_its_cv_error():
    feats, ys = synthetic(20)
    model = fit_predictor(feats, ys)
    assert model.method == "additive"
    assert model.report["n"] == 20 and model.report["within5"] == 1.0
    assert model.report["mape"] < 0.01 and model.report["tau"] > 0.95
    assert set(model.candidates) == {"additive", "ridge-log", "gbm-log"}
    new, truth = synthetic(25)
    assert model.predict(new[20:]) == pytest.approx(truth[20:], rel=0.02)
    # with 9 samples additive's 8 weights would interpolate each leave-one-out fit's 8 points
    assert set(fit_predictor(feats[:9], ys[:9]).candidates) == {"ridge-log", "gbm-log"}
    assert "additive" in fit_predictor(feats[:10], ys[:10]).candidates


def test_bad_training_sets_are_refused_in_one_sentence():
    feats, ys = synthetic(6)
    with pytest.raises(EdgeExploreError, match="at least 5 measured"):
        fit_predictor(feats[:3], ys[:3])
    with pytest.raises(EdgeExploreError, match="must be positive"):
        fit_predictor(feats, [0.0, *ys[1:]])


def fake_device_settings() -> list[str]:
    return ["--backend", "command", "--set",
            f"command={sys.executable} {TOOLS / 'fake_device.py'} {{model}} {{input_shape}}"]


@pytest.mark.slow
def test_few_sample_fit_on_a_stand_in_device_end_to_end(tmp_path):
    """A 'phone' whose latency depends on the model: fit on 10, show the error, check others."""
    db = str(tmp_path / "phone.db")
    runner = CliRunner()
    fit = runner.invoke(cli, ["predictor", "fit", "--space", "edgevit-tiny", "--samples", "10",
                              "--candidates", "30", *fake_device_settings(), "--storage", db],
                        catch_exceptions=False)
    assert fit.exit_code == 0, fit.output
    assert "on 10 measured architectures" in fit.output

    shown = runner.invoke(cli, ["predictor", "show", "--format", "json", "--storage", db])
    rows = json.loads(shown.stdout)
    assert {r["method"] for r in rows} == {"additive", "ridge-log", "gbm-log"}
    assert sum(r["chosen"] for r in rows) == 1
    assert all(r["backend"] == "command" and r["n"] == 10 for r in rows)
    assert all(r["features"] == "analytic" for r in rows)  # auto: a remote device times no units

    # architectures it was not trained on: predicted, then measured on the "device"
    others = random_configs(resolve_space("edgevit-tiny"), 60, seed=7)[-3:]
    paths = []
    for i, cfg in enumerate(others):
        paths.append(str(tmp_path / f"a{i}.json"))
        Path(paths[-1]).write_text(cfg.to_json())
    check = runner.invoke(cli, ["predictor", "check", *paths, *fake_device_settings(),
                                "--format", "json", "--storage", db], catch_exceptions=False)
    assert check.exit_code == 0, check.output
    rows = json.loads(check.stdout)
    assert [r["hash"] for r in rows] == [c.hash for c in others]
    for r in rows:
        assert r["error"] == pytest.approx((r["predicted_ms"] - r["measured_ms"])
                                           / r["measured_ms"])
        assert abs(r["error"]) < 0.5  # a rough stand-in and 10 samples: sane, not precise

    # a second fit with more samples measures only the new ones and keeps the first ten
    again = runner.invoke(cli, ["predictor", "fit", "--space", "edgevit-tiny", "--samples", "12",
                                "--candidates", "30", *fake_device_settings(), "--storage", db],
                          catch_exceptions=False)
    assert "on 12 measured architectures" in again.output


def test_check_without_a_fitted_predictor_says_what_to_run(tmp_path):
    open_store(str(tmp_path / "x.db"))  # a store, with no predictor in it
    result = CliRunner().invoke(cli, ["predictor", "check", "edgevit_xxs", "--storage",
                                      str(tmp_path / "x.db")])
    assert result.exit_code == 1
    assert "run `edgeexplore predictor fit` first" in str(result.exception)


def test_show_on_an_empty_store(tmp_path):
    open_store(str(tmp_path / "x.db"))
    result = CliRunner().invoke(cli, ["predictor", "show", "--storage", str(tmp_path / "x.db")])
    assert result.exit_code == 0 and "No latency predictor stored yet" in result.output


@pytest.mark.parametrize("args", [["show"], ["check", "edgevit_xxs"]])
def test_reading_predictors_of_a_missing_store_creates_nothing(tmp_path, args):
    missing = tmp_path / "x.db"
    result = CliRunner().invoke(cli, ["predictor", *args, "--storage", str(missing)])
    assert result.exit_code == 1 and "no database at" in str(result.exception)
    assert not missing.exists()


class ParamsDevice:
    """A Python stand-in backend: latency grows with parameters and modules, no timing at all."""

    name = "params-device"

    def __init__(self) -> None:
        self.settings = {"speed": 1}
        self.timed: list[int] = []

    def available(self):
        return True, "stand-in"

    def describe_device(self):
        return {"cpu": "stand-in"}

    def measure(self, model, input_shape):
        from edgeexplore.latency import Measurement

        params = sum(p.numel() for p in model.parameters())
        pixels = math.prod(input_shape[2:])  # 1 for a head's (batch, width) input
        ms = 0.5 + params * pixels / 4e8 + 0.02 * len(list(model.modules()))
        self.timed.append(params)
        return Measurement.from_samples(self.name, [ms], warmup=0, threads=1,
                                        input_shape=input_shape, device=self.describe_device(),
                                        settings=self.settings)


def test_fit_store_and_refit_from_the_cached_measurements(tiny_archs, tmp_path):
    from edgeexplore.latency.device_predictor import add_measurements, fit_device, load_predictor
    from edgeexplore.store import open_store

    store = open_store(str(tmp_path / "p.db"))
    device = ParamsDevice()
    pred = fit_device(tiny_archs[:14], 8, backend=device, store=store, features="analytic")
    assert len(device.timed) == 8 and len(pred.archs) == 8
    loaded = load_predictor(device, store=store)
    # refitted, not unpickled: the same training set gives the same model and the same error
    assert [c.hash for c in loaded.archs] == [c.hash for c in pred.archs]
    assert loaded.model.method == pred.model.method and loaded.report == pred.report
    assert loaded.predict(tiny_archs[14:17]) == pytest.approx(pred.predict(tiny_archs[14:17]))
    # a later fit with more samples keeps the first eight and measures only the new ones
    more = fit_device(tiny_archs[:14], 10, backend=device, store=store, features="analytic")
    assert len(device.timed) == 10 and more.archs[:8] == pred.archs
    grown = add_measurements(more, tiny_archs[20:21], [3.0], store=store)
    assert len(grown.archs) == 11 and grown.latencies[-1] == 3.0


def test_a_units_predictor_times_each_unit_once_and_keeps_its_features(tiny_archs, tmp_path):
    from edgeexplore.latency.device_predictor import fit_device, load_predictor
    from edgeexplore.store import open_store

    store = open_store(str(tmp_path / "p.db"))
    device = ParamsDevice()
    pred = fit_device(tiny_archs[:14], 8, backend=device, store=store)  # auto: a local backend
    assert pred.features == "units" and pred.model.method in pred.model.candidates
    # additive's 8 weights would interpolate 7 points in each leave-one-out fit: not compared
    assert set(pred.model.candidates) == {"units-scale", "units-kinds", "ridge-log", "gbm-log"}
    timed = len(device.timed)
    assert timed > 8  # the 8 architectures whole, then their units one by one
    # the stand-in's latency is a sum over what it runs, so the unit sums predict it closely
    assert pred.report["mape"] < 0.1
    loaded = load_predictor(device, store=store)  # the units come from the store's table
    assert len(device.timed) == timed
    assert loaded.features == "units" and loaded.report == pred.report
    assert loaded.predict(tiny_archs[14:17]) == pytest.approx(pred.predict(tiny_archs[14:17]))
    # a remote device gets analytic features unless asked otherwise
    device.remote = True
    refit = fit_device(tiny_archs[:14], 8, backend=device, store=store)
    assert refit.features == "analytic" and "units-scale" not in refit.model.candidates


def test_a_predicting_backend_cannot_train_a_predictor(tmp_path):
    db = tmp_path / "new.db"
    result = CliRunner().invoke(cli, ["predictor", "fit", "--backend", "lut", "--storage",
                                      str(db)])
    assert result.exit_code == 1
    assert "predicts latency rather than measuring it" in str(result.exception)
    assert not db.exists()  # refused before the store was created
