"""`edgeexplore fidelity` end to end on a tiny study: choice, longer trainings, reuse, report."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from tiny import tiny_text

from edgeexplore.cli import main


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """Five trials of a 1-epoch proxy on a synthetic subset."""
    root = tmp_path_factory.mktemp("fidelity")
    recipe, db = root / "tiny.yaml", root / "ee.db"
    recipe.write_text(tiny_text(subset=6, val_subset=4))
    assert main(["search", str(recipe), "--budget", "5", "--storage", str(db), "--quiet"]) == 0
    return db


def trainings(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT arch_hash, kind, state, epochs, epochs_done, best_top1 "
                           "FROM trainings ORDER BY id").fetchall()
    finally:
        con.close()


def test_fidelity_retrains_reports_and_reuses(study, tmp_path, capsys):
    plot = tmp_path / "fidelity.png"
    args = ["fidelity", "tiny", "--top", "4", "--recipe", "longer-proxy", "--epochs-factor", "2",
            "--storage", str(study)]
    assert main([*args, "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "proxy accuracy vs long accuracy: Kendall tau" in out
    assert "FLOPs (baseline) vs long accuracy" in out and "top-1 retrieval" in out
    assert out.count(": trained 2 epochs, complete") == 4
    assert plot.stat().st_size > 1000 and plot.read_bytes()[:4] == b"\x89PNG"
    rows = trainings(study)
    assert len(rows) == 4 and {r[1:5] for r in rows} == {("proxy", "complete", 2, 2)}

    # the second run trains nothing: every long training is reused, the report is the same
    assert main([*args, "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("reused training (trainings") == 4
    assert "trained 2 epochs" not in captured.err
    assert len(trainings(study)) == 4
    rep = json.loads(captured.out)
    assert len(rep["trials"]) == 4 and rep["missing"] == 0
    assert sum(t["on_front"] for t in rep["trials"]) >= 1
    long = {r[0]: r[5] for r in rows}
    assert {t["arch_hash"]: t["long_accuracy"] for t in rep["trials"]} == long
    assert -1 <= rep["proxy"]["tau"] <= 1 and -1 <= rep["proxy"]["rho"] <= 1

    # csv: the same per-trial values, one trial a row
    assert main([*args, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "trial_id,number,arch_hash,on_front,accuracy,long_accuracy,flops,params"
    assert len(lines) == 5


def test_fidelity_bad_input(study, capsys):
    assert main(["fidelity", "nope", "--storage", str(study)]) == 1
    assert "no study named 'nope'" in capsys.readouterr().err
    assert main(["fidelity", "tiny", "--epochs-factor", "1", "--storage", str(study)]) == 1
    assert "--epochs-factor must be above 1" in capsys.readouterr().err
    assert main(["fidelity", "tiny", "--recipe", "edgevit", "--storage", str(study)]) == 1
    assert "needs --data" in capsys.readouterr().err
