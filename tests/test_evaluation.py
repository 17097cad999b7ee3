"""The evaluation pipeline: one reuse key, outcome states, and reuse across callers."""

from __future__ import annotations

import json
import sqlite3

import pytest

from edgeexplore import store
from edgeexplore.ablation import QUICK_BASE
from edgeexplore.errors import ConfigError
from edgeexplore.evaluation import (
    DataSpec,
    LatencySpec,
    Recorder,
    TrainingSpec,
    TrialRow,
    evaluate,
    new_trial_row,
)
from edgeexplore.store import db
from edgeexplore.training.proxy import ProxyRecipe

DATA = DataSpec("synthetic", subset=3, val_subset=2)
RECIPE = {"epochs": 1, "batch_size": 10, "warmup_epochs": 0, "lr": 3e-3, "min_lr": 0.0,
          "nan_check_every": 1}
#: a tiny network at 32x32 for the synthetic task's class count (fvcore and training take
#: a second or two on a busy 2-core machine)
ARCH = QUICK_BASE.replace(resolution=(32, 32),
                          num_classes=TrainingSpec.proxy(RECIPE, DATA).load_data((32, 32))
                          .num_classes)


class Collect(Recorder):
    """Keeps what the pipeline hands to a recorder, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def start(self) -> None:
        self.events.append(("start", None))

    def write(self, session, outcome) -> None:
        self.events.append(("write", outcome.state))

    def failed(self, reason: str, outcome) -> None:
        self.events.append(("failed", reason))


class Limits:
    def __init__(self, max_params: int) -> None:
        self.max_params = max_params

    def check_cost(self, params: int, flops: int) -> str | None:
        return f"params {params} > {self.max_params}" if params > self.max_params else None

    def check_latency(self, cfg, measurement) -> str | None:
        return None


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'e.db'}"


@pytest.fixture
def trainings(monkeypatch):
    """Counts proxy trainings (the real ones still run)."""
    from edgeexplore.training import proxy

    real, calls = proxy.train_proxy, []

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(proxy, "train_proxy", counted)
    return calls


def _row(url: str, study: str, training: TrainingSpec, latency: LatencySpec | None = None) -> int:
    with db.session_scope(url) as s:
        row = new_trial_row(study, training, latency, store.get_or_create_environment(s).id)
        s.add(row)
        s.flush()
        return row.id


def test_one_key_for_one_training():
    spec = TrainingSpec.proxy(RECIPE, DATA, seed=0)
    # defaults written out or left implicit, a recipe object or a mapping: the same training
    full = TrainingSpec.proxy(ProxyRecipe.from_dict(RECIPE).to_dict(), DATA.to_dict(), 0)
    assert spec.key == full.key
    assert TrainingSpec.proxy(RECIPE, DATA, seed=1).key != spec.key
    assert TrainingSpec.proxy({**RECIPE, "epochs": 2}, DATA).key != spec.key
    assert TrainingSpec.proxy(RECIPE, DataSpec("synthetic", subset=4, val_subset=2)).key != spec.key
    # keys stored before the pipeline existed (store.train_key) still find their rows
    assert spec.key == store.train_key(spec.recipe, DATA.to_dict(), 0)
    # another kind is part of its own key: the same settings trained in full are another training
    assert TrainingSpec(spec.recipe, DATA, kind="full").key != spec.key
    assert TrainingSpec.full({"epochs": 10}, "synthetic").canonical()["kind"] == "full"
    with pytest.raises(ConfigError, match="training kind 'long' is not known"):
        TrainingSpec(spec.recipe, DATA, kind="long")
    with pytest.raises(ConfigError, match="needs at least 'spec'"):
        DataSpec.from_dict({"subset": 3})


def test_infeasible_states_train_nothing(url, trainings):
    spec = TrainingSpec.proxy(RECIPE, DATA)

    def not_an_architecture():
        raise ConfigError("depth 0 in stage 2")

    rec = Collect()
    out = evaluate(not_an_architecture, rec, training=spec, storage=url)
    assert (out.state, out.reason) == ("infeasible", "not a valid architecture: depth 0 in stage 2")
    assert out.arch_hash is None and "sample_seconds" in out.timings
    assert rec.events == [("write", "infeasible")]

    rec = Collect()
    out = evaluate(ARCH, rec, training=spec, storage=url, limits=Limits(max_params=1000))
    assert out.state == "infeasible" and out.reason == f"params {out.params} > 1000"
    assert out.params > 1000 and out.flops > 0 and out.accuracy is None
    assert rec.events == [("write", "infeasible")] and trainings == []
    # the architecture and its cost are stored all the same (counted once)
    with db.session_scope(url) as s:
        assert store.get_architecture(s, ARCH.hash).params == out.params


def test_train_then_reuse_in_the_store(url, trainings):
    spec = TrainingSpec.proxy(RECIPE, DATA)
    first_id = _row(url, "a", spec)
    first = evaluate(ARCH, TrialRow(url, first_id), training=spec, storage=url, progress=False)
    assert first.state == "complete" and 0.0 <= first.accuracy <= 1.0 and first.epochs == 1
    assert first.id == first_id and trainings == [1]
    assert {"cost_seconds", "train_seconds", "store_seconds", "total_seconds"} <= set(
        first.timings)

    # another study, same architecture and spec: reused, not trained
    second_id = _row(url, "b", spec)
    second = evaluate(ARCH, TrialRow(url, second_id), training=spec, storage=url)
    assert second.reused and second.prior.id == first_id and second.prior.study == "a"
    assert second.accuracy == first.accuracy and trainings == [1]
    # another seed is another training
    other = TrainingSpec.proxy(RECIPE, DATA, seed=1)
    third = evaluate(ARCH, TrialRow(url, _row(url, "b", other)), training=other, storage=url,
                     progress=False)
    assert not third.reused and trainings == [1, 1]

    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        rows = con.execute("SELECT id, study, state, train_key, reused_from, accuracy, "
                           "train_seconds FROM trial_results ORDER BY id").fetchall()
    finally:
        con.close()
    assert [r[:5] for r in rows] == [
        (first_id, "a", "complete", spec.key, None),
        (second_id, "b", "complete", spec.key, first_id),
        (third.id, "b", "complete", other.key, None),
    ]
    assert rows[1][5] == rows[0][5] and rows[1][6] == 0.0


def test_diverged_and_interrupted(url, monkeypatch):
    from edgeexplore.training import proxy

    wild = TrainingSpec.proxy({**RECIPE, "lr": 1e8}, DATA)
    rec = Collect()
    out = evaluate(ARCH, rec, training=wild, storage=url, progress=False)
    assert out.state == "diverged" and "NaN" in out.reason and out.accuracy is None
    assert rec.events == [("start", None), ("write", "diverged")]

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(proxy, "train_proxy", ctrl_c)
    spec = TrainingSpec.proxy(RECIPE, DATA, seed=7)
    row_id = _row(url, "a", spec)
    with pytest.raises(KeyboardInterrupt):
        evaluate(ARCH, TrialRow(url, row_id), training=spec, storage=url)
    with db.session_scope(url) as s:
        row = s.get(store.TrialResult, row_id)
        assert (row.state, row.reason) == ("failed", "interrupted by Ctrl-C")
    # a failed training is never reused: the next attempt trains
    monkeypatch.undo()
    again = evaluate(ARCH, Collect(), training=spec, storage=url, progress=False)
    assert again.state == "complete" and not again.reused


def test_interrupted_training_keeps_its_architecture_and_curve_so_far(url, monkeypatch):
    """Ctrl-C in the second epoch: the failed row keeps arch_hash, cost and the first epoch."""
    from edgeexplore.training import proxy

    real, calls = proxy._evaluate, []

    def interrupted_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(proxy, "_evaluate", interrupted_in_epoch_two)
    spec = TrainingSpec.proxy({**RECIPE, "epochs": 3}, DATA)
    row_id = _row(url, "a", spec)
    with pytest.raises(KeyboardInterrupt):
        evaluate(ARCH, TrialRow(url, row_id), training=spec, storage=url, progress=False)
    with db.session_scope(url) as s:
        row = s.get(store.TrialResult, row_id)
        assert (row.state, row.reason) == ("failed", "interrupted by Ctrl-C")
        assert row.arch_hash == ARCH.hash and row.architecture.flops == row.flops > 0
        assert row.epochs == 1 and [p["epoch"] for p in json.loads(row.curve)] == [1]
        assert row.finished_at is not None


def test_search_result_is_reused_by_an_ablation_run_and_a_preset_point(tmp_path, trainings):
    """A network a search trained is not trained again by an ablation-style run or a preset
    point with the same spec: the reuse key is the pipeline's alone."""
    from edgeexplore.cli import main
    from edgeexplore.evaluation.presets import PresetRecorder
    from edgeexplore.search.recipe import StudyRecipe
    from edgeexplore.search.trial import training_spec

    recipe_path = tmp_path / "tiny.yaml"
    recipe_path.write_text(
        "name: tiny\nspace: edgevit-tiny\nresolution: 32\n"
        "data: {spec: synthetic, subset: 3, val_subset: 2}\n"
        f"proxy: {RECIPE}\n"
        "objectives: [accuracy, flops]\nbackend: {name: torch-cpu, threads: 1, budget_s: 0.05,"
        " warmup: 1, min_samples: 3, max_samples: 5}\nsampler: random\nseed: 0\n"
        "early_stopping: false\n")
    url = f"sqlite:///{tmp_path / 's.db'}"
    assert main(["search", str(recipe_path), "--budget", "1", "--storage", url, "--quiet"]) == 0
    assert trainings == [1]
    spec = training_spec(StudyRecipe.load(recipe_path))
    with db.session_scope(url) as s:
        (trial,) = store.get_trials(s, "tiny", states=["complete"])
        arch = trial.architecture.arch
        assert trial.train_key == spec.key

    # the search's data is fixed at 32x32, so the same DataSpec an ablation at 32 would build
    assert spec.data == DataSpec("synthetic", 3, 2, (32, 32))
    run = evaluate(arch, TrialRow(url, _row(url, "ablation:x", spec)), training=spec,
                   storage=url)
    preset = evaluate(arch, PresetRecorder("mine", "tiny", spec), training=spec, storage=url)
    for out in (run, preset):
        assert out.reused and out.prior.id == trial.id and out.accuracy == trial.accuracy
    assert trainings == [1]
    with db.session_scope(url) as s:
        assert [t.reused_from for t in store.get_trials(s, "ablation:x")] == [trial.id]
