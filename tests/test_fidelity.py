"""`edgeexplore fidelity` end to end on a tiny study: choice, longer trainings, reuse, report."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from tiny import tiny_text

from edgeexplore.cli import main
from edgeexplore.config import ArchConfig


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


def test_processes_sharing_a_fidelity_run_put_off_what_another_trains(study, tmp_path):
    """A candidate another live process is training is put off to the end (when its result is
    there, or its claim can be taken over) instead of waiting at the front of the queue."""
    import os
    import socket

    from edgeexplore.analysis.fidelity import choose_trials
    from edgeexplore.evaluation.fidelity import long_spec, retrain
    from edgeexplore.store import claims, db

    copy = tmp_path / "copy.db"  # the module's study stays as the other tests expect it
    src, dst = sqlite3.connect(study), sqlite3.connect(copy)
    src.backup(dst)
    src.close(), dst.close()
    url = f"sqlite:///{copy}"
    trials = choose_trials("tiny", 3, url)
    spec = long_spec("tiny", "longer-proxy", 3, None, url)
    first = ArchConfig.from_json(trials[0].config).hash
    with db.session_scope(url) as s:  # our parent process "is training" the first candidate
        s.add(claims.TrainingClaim(arch_hash=first, train_key=spec.key,
                                   hostname=socket.gethostname(), pid=os.getppid(),
                                   heartbeat_at=db.utcnow()))
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("[3/3]"):  # the others are done: the owner gives up without a result
            with db.session_scope(url) as s:
                s.query(claims.TrainingClaim).delete()

    assert retrain(trials, spec, url, tmp_path, log=log) == 3
    assert lines[0].startswith("[1/3]") and "coming back to it at the end" in lines[0]
    assert [line[:5] for line in lines[1:]] == ["[2/3]", "[3/3]", "[1/3]"]
    assert all(": trained 3 epochs, complete" in line for line in lines[1:])
