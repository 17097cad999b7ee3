"""`edgeexplore search` end to end on a tiny recipe: store contents, resume, crashes, bad input."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from tiny import write_one_arch, write_tiny

from edgeexplore.cli import main

ROOT = Path(__file__).resolve().parents[1]

def _recipe(tmp_path: Path, name: str = "tiny.yaml", epochs: int = 1, lr: float = 3e-3) -> Path:
    return write_tiny(tmp_path, name, epochs=epochs, lr=lr, proxy_extra=", nan_check_every: 1")


def _rows(db: Path, study: str = "tiny") -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "SELECT state, accuracy, latency_ms, flops, params, reason FROM trial_results "
            "WHERE study = ? ORDER BY id", (study,)).fetchall()
    finally:
        con.close()


def _optuna_states(db: Path, study: str = "tiny") -> list[str]:
    s = optuna.load_study(study_name=study, storage=f"sqlite:///{db}")
    return [t.state.name for t in s.get_trials(deepcopy=False)]


def _search(*args: str) -> int:
    return main(["search", *args, "--quiet"])


def test_search_stores_trials_and_resume_extends(tmp_path, capsys):
    recipe, db = _recipe(tmp_path), tmp_path / "ee.db"
    assert _search(str(recipe), "--budget", "2", "--storage", str(db)) == 0
    out = capsys.readouterr().out
    assert "study tiny" in out
    rows = _rows(db)
    complete = [r for r in rows if r[0] == "complete"]
    assert len(complete) == 2
    for state, acc, lat, flops, params, _ in complete:
        assert 0.0 <= acc <= 1.0
        assert lat > 0 and flops > 0 and params > 0
    assert _optuna_states(db).count("COMPLETE") == 2

    # the same name again resumes and extends: 2 + 1 = 3
    assert _search(str(recipe), "--budget", "1", "--storage", str(db)) == 0
    assert [r[0] for r in _rows(db)].count("complete") == 3
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{db}")
    values = sorted(t.values[0] for t in study.trials if t.state.name == "COMPLETE")
    assert values == sorted(r[1] for r in _rows(db) if r[0] == "complete")


def test_optuna_cli_and_dashboard_read_the_same_store(tmp_path):
    """Optuna's own CLI and optuna-dashboard open our SQLite file and see the same trials."""
    recipe, db = _recipe(tmp_path), tmp_path / "ee.db"
    assert _search(str(recipe), "--budget", "2", "--storage", str(db)) == 0
    ours = sorted((r[1], r[2]) for r in _rows(db) if r[0] == "complete")
    optuna_cli = Path(sys.executable).with_name("optuna")
    listed = subprocess.run(
        [str(optuna_cli), "trials", "--storage", f"sqlite:///{db}", "--study-name", "tiny",
         "-f", "json"], capture_output=True, text=True, check=True, timeout=120)
    trials = json.loads(listed.stdout)
    assert sorted((t["values"]["accuracy"], t["values"]["latency_ms"]) for t in trials) == ours

    dashboard = pytest.importorskip("optuna_dashboard", reason="optuna-dashboard (dev group)")
    app = dashboard.wsgi(f"sqlite:///{db}")

    def get(path: str) -> dict:
        environ: dict = {}
        setup_testing_defaults(environ)
        environ["PATH_INFO"] = path
        status: list[str] = []
        body = b"".join(app(environ, lambda s, headers, exc=None: status.append(s)))
        assert status == ["200 OK"], (path, status)
        return json.loads(body)

    (summary,) = get("/api/studies")["study_summaries"]
    assert summary["study_name"] == "tiny"
    detail = get(f"/api/studies/{summary['study_id']}")
    assert detail["objective_names"] == ["accuracy", "latency_ms"]
    assert sorted(tuple(t["values"]) for t in detail["trials"]) == ours


def test_trained_presets_are_kept_for_the_next_plot(tmp_path, monkeypatch):
    """pareto --train-presets trains a preset with the study's recipe once, then reuses it."""
    from edgeexplore.analysis import query
    from edgeexplore.evaluation import place_presets
    from edgeexplore.training import proxy

    recipe, db = _recipe(tmp_path), tmp_path / "ee.db"
    assert _search(str(recipe), "--budget", "1", "--storage", str(db)) == 0
    real, calls = proxy.train_proxy, []

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(proxy, "train_proxy", counted)
    points = []
    for _ in range(2):
        result = query.pareto_front("tiny", "accuracy:max,flops:min", storage=str(db),
                                    presets=["edgevit_xxs"])
        place_presets(result.preset_requests, train=True, storage=str(db))
        (ref,) = result.references
        points.append(ref)
    assert len(calls) == 1  # the second plot reused the first training
    assert points[0].values["accuracy"] == points[1].values["accuracy"] is not None
    assert "trained now with study tiny" in points[0].note
    assert "trained earlier with study tiny" in points[1].note
    con = sqlite3.connect(db)
    try:
        assert con.execute("SELECT preset, study FROM preset_trainings").fetchall() == [
            ("edgevit_xxs", "tiny")]
        # not a trial of the study
        assert con.execute("SELECT count(*) FROM trial_results").fetchone()[0] == 1
    finally:
        con.close()


def _wait_for_running(db: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        if db.exists():
            try:
                con = sqlite3.connect(db, timeout=5)
                n = con.execute("SELECT count(*) FROM trial_results WHERE state='running' AND "
                                "optuna_trial_id IS NOT NULL AND flops IS NULL").fetchone()[0]
                con.close()
            except sqlite3.OperationalError:
                n = 0
            if n:
                time.sleep(1.0)
                return
        time.sleep(0.3)
    pytest.fail("the search never started a trial")


def _spawn(recipe: Path, db: Path, budget: str = "1") -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", "from edgeexplore.cli import run; run()", "search", str(recipe),
         "--budget", budget, "--storage", str(db), "--quiet"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_sigkill_mid_trial_loses_nothing_and_leaves_nothing_running(tmp_path):
    fast, slow, db = _recipe(tmp_path), _recipe(tmp_path, "slow.yaml", epochs=200), tmp_path / "k.db"
    assert _search(str(fast), "--budget", "1", "--storage", str(db)) == 0
    proc = _spawn(slow, db)
    _wait_for_running(db, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert [r[0] for r in _rows(db)] == ["complete", "running"]  # the kill left it running

    assert _search(str(fast), "--budget", "1", "--storage", str(db)) == 0
    states = [r[0] for r in _rows(db)]
    assert states.count("complete") == 2  # the first one kept, one more added
    assert "running" not in states
    failed = [r for r in _rows(db) if r[0] == "failed"]
    assert len(failed) == 1 and "interrupted" in failed[0][5]
    assert "RUNNING" not in _optuna_states(db)
    assert _optuna_states(db).count("COMPLETE") == 2


@pytest.mark.slow
def test_ctrl_c_finishes_cleanly_and_says_how_to_resume(tmp_path):
    slow, db = _recipe(tmp_path, "slow.yaml", epochs=200), tmp_path / "c.db"
    proc = _spawn(slow, db)
    _wait_for_running(db, proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Resume with: edgeexplore search" in out
    assert [r[0] for r in _rows(db)] == ["failed"]
    assert "Ctrl-C" in _rows(db)[0][5]
    assert _optuna_states(db) == ["FAIL"]


def test_diverging_trial_is_recorded_and_study_resumable(tmp_path, capsys):
    bad, good, db = _recipe(tmp_path, "bad.yaml", lr=1e8), _recipe(tmp_path), tmp_path / "d.db"
    assert _search(str(bad), "--budget", "1", "--storage", str(db)) == 0
    out = capsys.readouterr().out
    assert "diverged" in out and "NaN" in out
    rows = _rows(db)
    assert [r[0] for r in rows] == ["diverged"]
    assert rows[0][3] > 0  # cost and latency were kept
    assert _optuna_states(db) == ["FAIL"]
    assert _search(str(good), "--budget", "1", "--storage", str(db)) == 0
    assert [r[0] for r in _rows(db)] == ["diverged", "complete"]


def test_missing_data_folder(tmp_path, capsys):
    code = _search(str(_recipe(tmp_path)), "--budget", "1", "--storage",
                   str(tmp_path / "m.db"), "--data", f"folder:{tmp_path / 'nowhere'}")
    err = capsys.readouterr().err
    assert code == 1
    assert "nowhere" in err and err.count("\n") == 1  # one clear line, no traceback


def test_unwritable_database_path(tmp_path, capsys):
    code = _search(str(_recipe(tmp_path)), "--budget", "1", "--storage",
                   str(tmp_path / "no" / "such" / "dir.db"))
    err = capsys.readouterr().err
    assert code == 1 and "does not exist" in err and err.count("\n") == 1


def test_corrupt_database(tmp_path, capsys):
    db = tmp_path / "junk.db"
    db.write_bytes(b"this is not a database" * 100)
    code = _search(str(_recipe(tmp_path)), "--budget", "1", "--storage", str(db))
    err = capsys.readouterr().err
    assert code == 1 and "junk.db" in err and err.count("\n") == 1
    assert db.read_bytes().startswith(b"this is not a database")  # left alone


@pytest.mark.parametrize("command", [
    ["ablate", "local-agg", "--quick"], ["ablation-show", "x"], ["trials", "list"], ["studies"],
    ["pareto"], ["measure", "edgevit_xxs"],
])
def test_every_command_refuses_a_corrupt_database_in_one_line(tmp_path, capsys, command):
    db = tmp_path / "junk.db"
    db.write_bytes(b"this is not a database" * 100)
    code = main([*command, "--storage", str(db)])
    err = capsys.readouterr().err
    assert code == 1 and "junk.db" in err and "not a database" in err and err.count("\n") == 1
    assert db.read_bytes().startswith(b"this is not a database")


@pytest.mark.parametrize(("text", "needle"), [
    ("name: x\nspace: [edgevit", "malformed YAML"),
    ("name: x\nspace: edgevit-tiny\nbudget: 3", "unknown key 'budget'"),
])
def test_bad_recipe_is_one_line(tmp_path, capsys, text, needle):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    code = _search(str(p), "--budget", "1", "--storage", str(tmp_path / "r.db"))
    err = capsys.readouterr().err
    assert code == 1 and needle in err and "r.yaml" in err and err.count("\n") == 1


def test_bad_budget_and_resuming_with_other_objectives(tmp_path, capsys):
    recipe = _recipe(tmp_path)
    assert _search(str(recipe), "--budget", "soon", "--storage", str(tmp_path / "b.db")) == 1
    assert "budget 'soon'" in capsys.readouterr().err
    db = tmp_path / "o.db"
    assert _search(str(recipe), "--budget", "1", "--storage", str(db)) == 0
    other = tmp_path / "other.yaml"
    other.write_text(recipe.read_text().replace("[accuracy, latency_ms]", "[accuracy, flops]"))
    assert _search(str(other), "--budget", "1", "--storage", str(db), "--name", "tiny") == 1
    assert "already exists with objectives" in capsys.readouterr().err


@pytest.mark.slow
def test_two_workers_share_one_store(tmp_path):
    recipe, db = _recipe(tmp_path), tmp_path / "w.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(  # noqa: PLW1510 - the return code is asserted
        [sys.executable, "-c", "from edgeexplore.cli import run; run()", "search", str(recipe),
         "--budget", "3", "--workers", "2", "--storage", str(db), "--quiet"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "locked" not in done.stdout + done.stderr
    rows = _rows(db)
    assert [r[0] for r in rows] == ["complete"] * 3  # exactly the budget, no overshoot
    assert _optuna_states(db) == ["COMPLETE"] * 3


def test_same_architecture_is_reused_not_retrained(tmp_path, capsys):
    recipe = write_one_arch(tmp_path, proxy_extra=", nan_check_every: 1")
    db = tmp_path / "r.db"
    assert _search(str(recipe), "--budget", "2", "--storage", str(db)) == 0
    assert "(reused)" in capsys.readouterr().out
    con = sqlite3.connect(db)
    rows = con.execute("SELECT id, state, accuracy, reused_from, train_seconds, arch_hash "
                       "FROM trial_results ORDER BY id").fetchall()
    con.close()
    assert [r[1] for r in rows] == ["complete", "complete"]
    assert rows[1][3] == rows[0][0] and rows[1][2] == rows[0][2] and rows[1][4] == 0.0
    assert rows[0][5] == rows[1][5]


def test_wall_clock_budget(tmp_path):
    db = tmp_path / "t.db"
    assert _search(str(_recipe(tmp_path)), "--budget", "15s", "--storage", str(db)) == 0
    states = [r[0] for r in _rows(db)]
    assert states and set(states) <= {"complete", "infeasible"}


def test_trials_rerun_evaluates_the_architecture_again(tmp_path, capsys):
    recipe, db = _recipe(tmp_path), tmp_path / "r.db"
    assert _search(str(recipe), "--budget", "1", "--storage", str(db)) == 0
    capsys.readouterr()
    assert main(["trials", "rerun", "1", "--quiet", "--storage", str(db)]) == 0
    out = capsys.readouterr().out
    assert "Re-ran trial 1 of study tiny with seed 1: trial 2 complete" in out
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT id, study, state, seed, arch_hash, optuna_trial_id, metrics, "
                           "reused_from FROM trial_results ORDER BY id").fetchall()
    finally:
        con.close()
    first, again = rows
    assert again[1:4] == ("tiny", "complete", 1) and again[4] == first[4]
    assert again[5] is None and again[7] is None  # not an Optuna trial, trained anew
    assert json.loads(again[6])["rerun_of"] == 1
    assert _optuna_states(db) == ["COMPLETE"]
    # the same seed as the complete original: its result is reused, not trained again
    assert main(["trials", "rerun", "1", "--seed", "0", "--quiet", "--storage", str(db)]) == 0
    assert "complete (reused)" in capsys.readouterr().out
    assert main(["trials", "rerun", "99", "--storage", str(db)]) == 1
    assert "no trial with id 99" in capsys.readouterr().err


def test_search_log_counts_trials_names_them_by_id_and_says_what_data_it_found(tmp_path,
                                                                                capsys):
    recipe, db = _recipe(tmp_path), tmp_path / "p.db"
    assert main(["search", str(recipe), "--budget", "2", "--storage", str(db)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("Starting: loading the recipe")
    # the data as loaded, once: 3 train and 2 val images per class of the synthetic task
    data = [ln for ln in lines if ln.startswith("data synthetic")]
    assert len(data) == 1 and "classes" in data[0]
    con = sqlite3.connect(db)
    try:
        ids = [r[0] for r in con.execute("SELECT id FROM trial_results WHERE state='complete' "
                                         "ORDER BY id")]
    finally:
        con.close()
    first = next(ln for ln in lines if ln.startswith(f"trial {ids[0]} (1 of 2, ETA "))
    assert "mlp=" in first and " sr=" in first
    assert any(ln.startswith(f"trial {ids[1]} (2 of 2) complete") for ln in lines)

    # --data replaces the data: the recipe's subset is not carried over, and it says so
    capsys.readouterr()
    assert main(["search", str(recipe), "--budget", "1", "--storage", str(db), "--name", "d",
                 "--data", "synthetic", "--quiet"]) == 0
    assert "its subset (3 train / 2 val images per class) is dropped" in capsys.readouterr().out
    con = sqlite3.connect(db)
    try:
        (label,) = con.execute("SELECT data FROM trial_results WHERE study='d'").fetchone()
    finally:
        con.close()
    assert label == "synthetic"
