"""Searches with `backend: predicted` (issue 15, item 3): the device's learned predictor predicts
every trial, the stand-in device measures those near the front, the front is made of measured
latencies, `trials show` prints the prediction and the predictor's error, resume keeps it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tiny import tiny_text, write_tiny

from edgeexplore.cli import cli, main
from edgeexplore.evaluation import LatencySpec, Recorder, evaluate
from edgeexplore.evaluation.predicted import near_front
from edgeexplore.evaluation.specs import Prediction
from edgeexplore.latency.device_predictor import fit_device
from edgeexplore.objectives import Objective
from edgeexplore.search.recipe import StudyRecipe
from edgeexplore.search.space import random_configs, resolve_space
from edgeexplore.store import open_store

TOOLS = Path(__file__).parent / "latency_tools"
OBJECTIVES = (Objective("accuracy", "max"), Objective("latency_ms", "min"))

#: the stand-in phone of test_predictor.py: deterministic latency from the exported model
STAND_IN = (f"{{name: predicted, measure: command, min_measured: 5, refit_every: 2, "
            f"command: '{sys.executable} {TOOLS / 'fake_device.py'} {{model}} {{input_shape}}'}}")
_TINY_BACKEND = ("{name: torch-cpu, threads: 1, budget_s: 0.05, warmup: 1, min_samples: 3, "
                 "max_samples: 5}")


def recipe(tmp_path: Path, backend: str = STAND_IN) -> Path:
    text = tiny_text().replace(_TINY_BACKEND, backend).replace("name: tiny", "name: pred")
    assert backend in text
    path = tmp_path / "pred.yaml"
    path.write_text(text)
    return path


def run_json(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_predicted_trial_is_measured_unless_a_measured_one_dominates_its_best_case():
    values = np.array([[0.5, 10.0],   # measured
                       [0.4, 12.0],   # predicted, 20% error: best case 10 ms, still dominated
                       [0.4, 13.0],   # predicted, 40% error: best case 9.3 ms, may beat #0
                       [0.6, 30.0],   # predicted, more accurate than anything measured
                       [0.3, 20.0]])  # measured, dominated: measured points never need it
    predicted = np.array([False, True, True, True, False])
    error = np.array([np.nan, 0.2, 0.4, 0.1, np.nan])
    assert near_front(values, predicted, error, OBJECTIVES).tolist() == [
        False, False, True, True, False]
    # an unknown error (NaN) trusts nothing: any latency is possible
    assert near_front(values[:2], predicted[:2], np.array([np.nan, np.nan]),
                      OBJECTIVES).tolist() == [False, True]
    # a tie is no domination: the trial could be on the front
    assert near_front(np.array([[0.5, 10.0], [0.5, 10.0]]), np.array([False, True]),
                      np.array([np.nan, 0.0]), OBJECTIVES).tolist() == [False, True]


def _by_id(db: Path) -> dict[int, dict]:
    return {r["id"]: r for r in run_json("trials", "list", "--study", "pred", "--format",
                                         "json", "--storage", str(db))}


def _check_front(db: Path) -> tuple[dict[int, dict], dict[int, dict]]:
    """Every front member measured; every predicted trial dominated, even at its lowest
    latency, by a measured one. Returns the trials and their `trials show` details."""
    trials = _by_id(db)
    front = run_json("pareto", "--study", "pred", "--format", "json", "--storage", str(db))
    assert front["front"] and all(trials[p["id"]]["latency_source"] == "measured"
                                  for p in front["front"])
    shown = {i: run_json("trials", "show", str(i), "--format", "json", "--storage", str(db))
             for i, t in trials.items() if t["state"] == "complete"}
    measured = [t for t in trials.values()
                if t["state"] == "complete" and t["latency_source"] == "measured"]
    for i, d in shown.items():
        src = d["latency_source"]
        if src["source"] != "predicted":
            continue
        best = src["predicted_ms"] / (1 + src["predictor_error"])
        acc = trials[i]["accuracy"]
        assert any(m["accuracy"] >= acc and m["latency_ms"] <= best
                   and (m["accuracy"] > acc or m["latency_ms"] < best) for m in measured), i
    assert front["left_out_predicted"] == sum(
        d["latency_source"]["source"] == "predicted" for d in shown.values())
    return trials, shown


@pytest.mark.slow
def test_a_search_with_predicted_latency_measures_its_front_and_resumes(tmp_path):
    db = tmp_path / "p.db"
    path = recipe(tmp_path)
    assert main(["search", str(path), "--budget", "9", "--storage", str(db), "--quiet"]) == 0
    trials, shown = _check_front(db)
    assert all(t["state"] == "complete" for t in trials.values()) and len(trials) == 9
    # stored as the backend that measures; the first five measured to fit the predictor on
    assert {t["backend"] for t in trials.values()} == {"command"}
    first = sorted(shown)[:5]
    assert all(shown[i]["latency_source"] == {
        "source": "measured", "predicted_ms": None, "predictor_error": None,
        "predictor_mape": None, "predictor_within10": None, "predictor_n": None,
        "predictor_method": None} for i in first)
    later = [shown[i]["latency_source"] for i in sorted(shown)[5:]]
    assert later and all(s["predicted_ms"] > 0 and s["predictor_n"] >= 5 for s in later)

    # trials show prints the prediction and the predictor's cross-validated error
    out = CliRunner().invoke(cli, ["trials", "show", str(max(shown)), "--storage",
                                   str(db)]).output
    line = next(x for x in out.splitlines() if x.startswith("latency "))
    assert "predicted" in line and " ms by the learned predictor" in line
    assert "cross-validated error: worst" in line and "MAPE" in line

    # what the study measured trains the device's predictor
    sources = [d["latency_source"]["source"] for d in shown.values()]
    (pred,) = [r for r in run_json("predictor", "show", "--format", "json", "--storage",
                                   str(db)) if r["chosen"]]
    assert pred["backend"] == "command" and pred["n"] >= 5
    assert pred["n"] <= sources.count("measured")

    # resumed: the stored sources stay, new trials are predicted from the start
    assert main(["search", str(path), "--budget", "3", "--storage", str(db), "--quiet"]) == 0
    again, shown_again = _check_front(db)
    assert len(again) == 12
    assert all(shown_again[i]["latency_source"]["predicted_ms"] == shown[i]["latency_source"][
        "predicted_ms"] for i in shown)
    assert all(shown_again[i]["latency_source"]["predicted_ms"] is not None
               for i in sorted(shown_again)[9:])
    # and the filter language knows the source
    predicted = run_json("trials", "list", "--where", 'latency_source == "predicted"',
                         "--format", "json", "--storage", str(db))
    assert {r["id"] for r in predicted} == {
        i for i, d in shown_again.items() if d["latency_source"]["source"] == "predicted"}
    exported = run_json("trials", "export", "--format", "json", "--storage", str(db))
    assert {r["id"]: r["latency_source"] for r in exported} == {
        i: t["latency_source"] for i, t in again.items()}


@pytest.mark.parametrize("backend, extra, message", [
    ("predicted", "", "backend: predicted needs 'measure: NAME'"),
    ("{name: predicted, measure: torch-cpu, min_measured: 2}", "",
     "backend: min_measured must be an integer of at least 5, not 2"),
    ("{name: predicted, measure: lut}", "", "'lut' is not cached"),
    ("{name: predicted, measure: torch-cpu}", "objectives: [accuracy, energy_mj]\n",
     "predicted latency comes without energy"),
])
def test_bad_predicted_backends_are_one_sentence(tmp_path, capsys, backend, extra, message):
    path = recipe(tmp_path, backend)
    if extra:
        path.write_text(path.read_text().replace("objectives: [accuracy, latency_ms]\n", extra))
    assert main(["search", str(path), "--budget", "1", "--storage",
                 str(tmp_path / "x.db")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("Error: ") and message in err, err


class _Kept(Recorder):
    def write(self, session, outcome):
        pass


class _MaxLatency:
    """A space's latency limit, as the pipeline's ``limits`` sees it."""

    def __init__(self, max_ms: float) -> None:
        self.max_ms = max_ms

    def check_cost(self, params, flops):
        return None

    def check_latency(self, cfg, measurement):
        return "too slow" if measurement.median_ms > self.max_ms else None


def test_a_latency_limit_is_measured_only_where_the_prediction_cannot_decide(tmp_path):
    url = str(tmp_path / "l.db")
    command = f"{sys.executable} {TOOLS / 'fake_device.py'} {{model}} {{input_shape}}"
    archs = random_configs(resolve_space("edgevit-tiny"), 12, seed=3)
    fit_device(archs[:10], 5, backend="command", store=open_store(url), command=command)
    spec = LatencySpec("command", {"command": command}, prediction=Prediction(min_measured=5))
    cfg = archs[11]

    def run(max_ms: float):
        return evaluate(cfg, _Kept(), latency=spec, storage=url, limits=_MaxLatency(max_ms))

    free = run(1e9)  # the whole error range is under the limit: the prediction decides
    assert free.state == "complete" and free.latency_source == "predicted"
    p, e = free.prediction["predicted_ms"], free.prediction["predictor_error"]
    assert free.latency_ms == p and free.latency_p90_ms is None
    out = run(p / (1 + e) / 2)  # even the lowest possible latency breaks it
    assert out.state == "infeasible" and out.reason == "too slow"
    assert out.latency_source == "predicted"
    straddled = run(p)  # within the predictor's error: measured to decide
    assert straddled.latency_source == "measured" and straddled.latency_p90_ms is not None
    assert straddled.prediction["predicted_ms"] == p
    assert straddled.metrics["latency"]["predicted_ms"] == p


def test_backend_predicted_on_the_command_line(tmp_path):
    plain = StudyRecipe.load(write_tiny(tmp_path))
    turned = plain.with_overrides(backend="predicted")
    # the recipe's own backend measures
    assert turned.backend == "torch-cpu" and turned.prediction == Prediction()
    assert turned.backend_settings == plain.backend_settings
    predicted = StudyRecipe.load(recipe(tmp_path))
    assert predicted.backend == "command" and predicted.prediction == Prediction(5, 2)
    assert predicted.with_overrides(backend="predicted").prediction == Prediction(5, 2)
    other = predicted.with_overrides(backend="onnxruntime")
    assert other.backend == "onnxruntime" and other.prediction is None
