"""Moving a study between SQLite and PostgreSQL (copy-study) and watching workers (workers)."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta

import optuna
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text
from tiny import TINY

from edgeexplore import store
from edgeexplore.cli import cli, main
from edgeexplore.search.workers import GRACE_S
from edgeexplore.store import db

pytestmark = pytest.mark.postgres


TABLES = ("trial_results", "architectures", "environments", "latency_measurements", "trials",
          "trial_params", "trial_values")


def _invoke(*args: str) -> str:
    res = CliRunner().invoke(cli, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def _listing(url: str) -> list[dict]:
    """`trials list` and `trials export` as JSON, minus our row ids (new in every store)."""
    rows = json.loads(_invoke("trials", "list", "--storage", url, "--format", "json"))
    export = json.loads(_invoke("trials", "export", "--storage", url, "--format", "json"))
    drop = {"id", "optuna_trial_id", "optuna_study_id", "environment_id", "reused_from"}
    return [{k: v for k, v in r.items() if k not in drop} for r in rows + export]


def _counts(url: str) -> dict[str, int]:
    with create_engine(url).connect() as conn:
        return {t: conn.scalar(text(f"SELECT count(*) FROM {t}")) for t in TABLES}


def _linked(url: str) -> list[tuple]:
    """Each trial result with the number, state, values and parameters of its Optuna trial."""
    with create_engine(url).connect() as conn:
        values: dict[int, list] = {}
        for tid, value in conn.execute(text(
                "SELECT trial_id, value FROM trial_values ORDER BY trial_id, objective")):
            values.setdefault(tid, []).append(value)
        params: dict[int, list] = {}
        for tid, name, value in conn.execute(text(
                "SELECT trial_id, param_name, param_value FROM trial_params "
                "ORDER BY trial_id, param_name")):
            params.setdefault(tid, []).append((name, value))
        rows = conn.execute(text(
            "SELECT r.number, t.number, t.state, s.study_name, r.optuna_study_id = t.study_id,"
            " t.trial_id, r.reused_from IS NOT NULL FROM trial_results r"
            " JOIN trials t ON t.trial_id = r.optuna_trial_id"
            " JOIN studies s ON s.study_id = t.study_id ORDER BY r.number"))
        return [(*r[:5], values.get(r[5]), params.get(r[5]), r[6]) for r in rows]


def _sqlite(url: str) -> str:
    return url.removeprefix("sqlite:///")


def test_copy_sqlite_to_postgresql_and_back(tmp_path, pg_url):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(TINY)
    src, back = f"sqlite:///{tmp_path / 'src.db'}", f"sqlite:///{tmp_path / 'back.db'}"
    assert main(["search", str(recipe), "--budget", "2", "--storage", src, "--quiet"]) == 0
    with sqlite3.connect(_sqlite(src)) as conn:  # a reuse link inside the study must follow
        conn.execute("UPDATE trial_results SET reused_from = 1 WHERE id = 2")
    # the destination already holds another study, so every Optuna id there differs
    other = optuna.create_study(study_name="other", storage=pg_url)
    for _ in range(3):
        other.tell(other.ask(), 1.0)

    assert main(["copy-study", "tiny", "--from", src, "--to", pg_url]) == 0
    assert main(["copy-study", "tiny", "--from", pg_url, "--to", back]) == 0

    listing = _listing(src)
    assert len(listing) == 4 and _listing(pg_url) == listing and _listing(back) == listing
    counts = _counts(src)
    assert counts["latency_measurements"] == 2 and counts["environments"] == 1
    assert _counts(back) == counts
    pg_counts = _counts(pg_url)
    assert pg_counts["trials"] == counts["trials"] + 3
    assert {k: pg_counts[k] for k in TABLES[:4]} == {k: counts[k] for k in TABLES[:4]}
    linked = _linked(src)
    assert [r[:2] for r in linked] == [(0, 0), (1, 1)] and linked[1][-1]
    assert _linked(pg_url) == _linked(back) == linked
    with create_engine(pg_url).connect() as conn:  # the link points at the new row id
        assert conn.scalar(text("SELECT r.reused_from = f.id FROM trial_results r, "
                                "trial_results f WHERE r.number = 1 AND f.number = 0"))
    for url in (pg_url, back):  # Optuna's trials name our new rows
        attrs = {t.number: t.user_attrs["edgeexplore_id"]
                 for t in optuna.load_study(study_name="tiny", storage=url).trials}
        rows = json.loads(_invoke("trials", "list", "--storage", url, "--format", "json"))
        assert attrs == {r["number"]: r["id"] for r in rows}
    # the copy is a working study: a search extends it on PostgreSQL
    assert main(["search", str(recipe), "--budget", "1", "--storage", pg_url, "--quiet"]) == 0
    assert [r[:2] for r in _linked(pg_url)] == [(0, 0), (1, 1), (2, 2)]


def test_copy_refuses_and_leaves_nothing_half_copied(tmp_path, pg_url, capsys):
    src = f"sqlite:///{tmp_path / 'src.db'}"
    study = optuna.create_study(study_name="s", storage=src, directions=["maximize"])
    trial = study.ask()
    study.tell(trial, 0.5)
    with db.session_scope(src) as s:
        s.add(store.TrialResult(study="s", state=store.COMPLETE, number=0, accuracy=0.5,
                                optuna_trial_id=trial._trial_id))
    assert main(["copy-study", "nope", "--from", src, "--to", pg_url]) == 1
    assert "holds no study named 'nope'" in capsys.readouterr().err
    missing = tmp_path / "typo.db"
    assert main(["copy-study", "s", "--from", str(missing), "--to", pg_url]) == 1
    assert "no database at" in capsys.readouterr().err and not missing.exists()

    engine = create_engine(pg_url)
    assert inspect(engine).get_table_names() == []  # refused copies made no store there
    engine.dispose()

    # our insert fails at the destination after Optuna's copy: Optuna's study goes too
    db.open_store(pg_url)
    with create_engine(pg_url).begin() as conn:
        conn.execute(text("CREATE FUNCTION no_rows() RETURNS trigger AS $$ BEGIN "
                          "RAISE EXCEPTION 'no trial results here'; END $$ LANGUAGE plpgsql"))
        conn.execute(text("CREATE TRIGGER no_rows BEFORE INSERT ON trial_results "
                          "FOR EACH ROW EXECUTE FUNCTION no_rows()"))
    assert main(["copy-study", "s", "--from", src, "--to", pg_url]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error:") and "no trial results here" in err and "\n" not in err
    assert optuna.get_all_study_names(pg_url) == []
    assert _counts(pg_url)["trials"] == 0 and _counts(pg_url)["trial_results"] == 0

    with create_engine(pg_url).begin() as conn:
        conn.execute(text("DROP TRIGGER no_rows ON trial_results"))
    assert main(["copy-study", "s", "--from", src, "--to", pg_url]) == 0
    assert main(["copy-study", "s", "--from", src, "--to", pg_url]) == 1
    assert "already has a study named 's': nothing copied" in capsys.readouterr().err
    assert _counts(pg_url)["trial_results"] == 1
    assert main(["copy-study", "s", "--from", src, "--to", _sqlite(src)]) == 1
    assert "are the same store" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_workers(tmp_path, request, capsys, backend):
    url = (request.getfixturevalue("pg_url") if backend == "postgresql"
           else f"sqlite:///{tmp_path / 'w.db'}")
    now = db.utcnow()
    with db.session_scope(url) as s:
        rows = [("gpu1", 101, store.RUNNING, 5), ("gpu2", 202, store.RUNNING, GRACE_S + 60),
                ("gpu1", 100, store.COMPLETE, 0), ("gpu1", 100, store.FAILED, 0),
                ("gpu3", 300, store.COMPLETE, 0)]
        for number, (host, pid, state, age) in enumerate(rows):
            s.add(store.TrialResult(study="w", state=state, number=number, hostname=host,
                                    pid=pid, heartbeat_at=now - timedelta(seconds=age),
                                    started_at=now - timedelta(seconds=age + 30)))
        s.add(store.TrialResult(study="other", state=store.RUNNING, hostname="gpu9", pid=9,
                                heartbeat_at=now))
    workers = json.loads(_invoke("workers", "w", "--storage", url, "--format", "json"))
    assert [(w["hostname"], w["pid"], w["number"], w["stale"]) for w in workers] == [
        ("gpu2", 202, 1, True), ("gpu1", 101, 0, False)]
    assert 5 <= workers[1]["seconds_since_heartbeat"] < 60
    assert workers[0]["seconds_since_heartbeat"] > GRACE_S
    hosts = json.loads(_invoke("workers", "w", "--storage", url, "--format", "json", "--hosts"))
    assert hosts == [
        {"hostname": "gpu1", "running": 1, "finished": 2, "stale": 0},
        {"hostname": "gpu2", "running": 1, "finished": 0, "stale": 1},
        {"hostname": "gpu3", "running": 0, "finished": 1, "stale": 0},
    ]
    csv_out = _invoke("workers", "w", "--storage", url, "--format", "csv")
    assert csv_out.splitlines()[0].startswith("hostname,pid,trial_id,number")
    assert len(csv_out.splitlines()) == 3
    table = _invoke("workers", "w", "--storage", url)
    assert "stale" in table and "gpu2" in table and "gpu3" in table and "gpu9" not in table
    assert main(["workers", "nope", "--storage", url]) == 1
    assert "holds no trials of a study named 'nope'" in capsys.readouterr().err
