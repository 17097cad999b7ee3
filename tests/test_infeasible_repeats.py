"""A search never checks an architecture it already found infeasible a second time: within a run,
across resumes and across worker processes, a repeat proposal is told to the sampler from the
stored result instead of being counted, timed and recorded again."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import optuna
import pytest
from tiny import tiny_text

from edgeexplore.cli import main

#: 8 architectures (stage 2, 3 and 4 heads); 14.9k-50.0k parameters, so a limit of 20k leaves the
#: two smallest (14.9k, 17.9k) feasible and a limit of 10k none
_FEW = """
resolution: 32
head_dim: 8
stages:
  - {{depth: 1, heads: 1, block: conv}}
  - {{depth: 1, heads: [1, 2], block: conv}}
  - {{depth: 1, heads: [2, 4], block: lgl, sample_rate: 2}}
  - {{depth: 1, heads: [2, 4], block: lgl}}
constraints: {{max_params: {limit}}}
"""


def _recipe(tmp_path: Path, limit: int, sampler: str = "random") -> Path:
    (tmp_path / "few.yaml").write_text(_FEW.format(limit=limit))
    path = tmp_path / "few-study.yaml"
    path.write_text(tiny_text().replace("space: edgevit-tiny", "space: few.yaml")
                    .replace("sampler: random", f"sampler: {sampler}"))
    return path


def _search(recipe: Path, db: Path, *args: str) -> int:
    return main(["search", str(recipe), "--storage", str(db), "--quiet", *args])


def _checked(db: Path) -> Counter[str]:
    """How often each architecture was found infeasible (one row per check)."""
    con = sqlite3.connect(db)
    try:
        return Counter(h for (h,) in con.execute(
            "SELECT arch_hash FROM trial_results WHERE state = 'infeasible'"))
    finally:
        con.close()


def _pruned(db: Path) -> int:
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,)))


def test_an_infeasible_architecture_is_checked_once_across_runs(tmp_path, capsys):
    recipe, db = _recipe(tmp_path, 20_000), tmp_path / "r.db"
    # random sampling of 8 architectures, 6 of them infeasible: repeats are certain
    assert _search(recipe, db, "--budget", "3") == 0
    first = _checked(db)
    assert first and max(first.values()) == 1, first
    # the repeats were told to Optuna (pruned) without a row of ours, and printed nothing
    assert _pruned(db) > sum(first.values())
    assert capsys.readouterr().out.count(") infeasible: ") == sum(first.values())
    assert _search(recipe, db, "--budget", "3") == 0  # a resume draws with another seed
    again = _checked(db)
    assert max(again.values()) == 1 and len(again) <= 6, again


def test_a_space_with_nothing_feasible_still_ends_in_one_sentence(tmp_path, capsys):
    recipe, db = _recipe(tmp_path, 10_000), tmp_path / "n.db"
    assert _search(recipe, db, "--budget", "1") == 1
    err = capsys.readouterr().err
    assert "50 samples in a row broke the space's constraints" in err
    assert len(err.strip().splitlines()) == 1, err
    checked = _checked(db)
    assert max(checked.values()) == 1 and len(checked) <= 8, checked


@pytest.mark.slow
def test_two_workers_check_an_infeasible_architecture_once(tmp_path):
    recipe, db = _recipe(tmp_path, 20_000), tmp_path / "w.db"
    assert _search(recipe, db, "--budget", "4", "--workers", "2") == 0
    checked = _checked(db)
    assert max(checked.values()) == 1, checked
