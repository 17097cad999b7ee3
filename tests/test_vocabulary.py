"""One vocabulary: one Objective spelt ``name:max|min``, one study summary, one resolution rule,
study names that are checked, and resume hints that run on the same store."""

from __future__ import annotations

import json
import shlex
import sqlite3
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from tiny import TINY

from edgeexplore import store
from edgeexplore.analysis import pareto, query
from edgeexplore.cli import cli, main
from edgeexplore.config import parse_resolution
from edgeexplore.data import load_data, parse_spec
from edgeexplore.errors import ConfigError
from edgeexplore.search import recipe as recipe_mod
from edgeexplore.search import study as study_mod
from edgeexplore.search.recipe import StudyRecipe
from edgeexplore.store import db


def test_one_objective_type_and_spelling(tmp_path):
    assert recipe_mod.Objective is pareto.Objective is query.Objective
    path = tmp_path / "r.yaml"
    path.write_text("space: edgevit-tiny\nobjectives: [{accuracy: maximize}, latency: minimize]")
    recipe = StudyRecipe.load(path)
    assert [str(o) for o in recipe.objectives] == ["accuracy:max", "latency_ms:min"]
    assert [o.optuna_direction for o in recipe.objectives] == ["maximize", "minimize"]
    assert [str(o) for o in query.parse_objectives("acc:maximize,latency")] == [
        "accuracy:max", "latency_ms:min"]
    path.write_text("space: edgevit-tiny\nobjectives: [{accuracy: up}]")
    with pytest.raises(ConfigError, match="direction of accuracy must be max or min, not 'up'"):
        StudyRecipe.load(path)
    with pytest.raises(ConfigError, match="direction of accuracy must be max or min, not 'up'"):
        query.parse_objectives("accuracy:up,latency_ms")


def test_studies_read_objectives_in_any_older_spelling(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with db.session_scope(url) as s:
        s.add(store.TrialResult(study="old", number=0, state=store.COMPLETE, seed=0,
                                accuracy=0.5, params=1000))
        s.add(store.TrialResult(study="old", number=1, state=store.COMPLETE, seed=0,
                                accuracy=0.4, params=800))
    study = optuna.create_study(storage=url, study_name="old",
                                directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["accuracy:maximize", "params:minimize"])
    res = CliRunner().invoke(cli, ["studies", "--storage", url, "--format", "json"])
    (got,) = json.loads(res.stdout)
    assert got["objectives"] == ["accuracy:max", "params:min"]
    assert got["best"] == {"accuracy": 0.5, "params": 800}


def test_one_resolution_rule():
    from edgeexplore import data

    assert data.parse_resolution is parse_resolution
    with pytest.raises(ConfigError) as rule:
        parse_resolution(48)
    with pytest.raises(ConfigError) as loading:
        load_data("synthetic", resolution=48)
    assert str(loading.value) == str(rule.value)
    with pytest.raises(ConfigError, match="multiples of 32"):
        parse_spec("synthetic:resolution=40")
    assert parse_resolution("96x64") == (96, 64)


@pytest.mark.parametrize("name", ["", "   ", "x" * 10_000, "a\nb", "tab\there"])
def test_bad_study_names_are_refused_before_anything_is_stored(tmp_path, capsys, name):
    recipe, path = tmp_path / "tiny.yaml", tmp_path / "ee.db"
    recipe.write_text(TINY)
    assert main(["search", str(recipe), "--budget", "1", "--name", name, "--storage",
                 str(path), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: a study name must be 1 to 200 printable characters")
    assert "\n" not in err
    assert not path.exists()


def test_resume_command_names_the_store_only_when_it_is_not_the_default(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDGEEXPLORE_STORAGE", raising=False)
    recipe = StudyRecipe.from_dict({"space": "edgevit-tiny"}, name="tiny")
    summary = study_mod.StudySummary("my study")
    here = study_mod.SearchRun(summary, db.normalise_url(None), recipe, [], 1.0)
    assert study_mod.resume_command(here) == (
        "edgeexplore search tiny --name 'my study' --budget N")
    there = study_mod.SearchRun(summary, "sqlite:///other.db", recipe, [], 1.0)
    assert study_mod.resume_command(there) == (
        "edgeexplore search tiny --name 'my study' --storage sqlite:///other.db --budget N")


def test_search_hint_runs_on_the_same_store_and_names_print_as_written(tmp_path, capsys):
    name = "[red]x[/red] it's"
    recipe, path = tmp_path / "tiny.yaml", tmp_path / "other.db"
    recipe.write_text(TINY)
    assert main(["search", str(recipe), "--budget", "1", "--name", name, "--storage",
                 str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"study {name}" in out
    con = sqlite3.connect(path)
    (arch,) = con.execute("SELECT arch_hash FROM trial_results").fetchone()
    con.close()
    assert f"[{arch[:8]}]" in out  # a hash in brackets is text, not a style to drop
    hint = next(line for line in out.splitlines() if "Extend it: " in line)
    words = shlex.split(hint.split("Extend it: ", 1)[1].replace(" --budget N", ""))
    assert words[words.index("--name") + 1] == name
    # the hint, run as printed, extends the same study in the same file
    assert main([*words[1:], "--budget", "1", "--quiet"]) == 0
    capsys.readouterr()
    con = sqlite3.connect(path)
    states = [r[0] for r in con.execute("SELECT state FROM trial_results WHERE study = ?",
                                        (name,))]
    con.close()
    assert states == ["complete", "complete"]
    # the search's summary and `studies` are one type with the same numbers
    assert study_mod.StudySummary is query.StudySummary
    (listed,) = query.list_studies(storage=str(path))
    assert listed.name == name and listed.states == {"complete": 2}
    assert Path(path).is_file()
