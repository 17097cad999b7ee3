"""Schema versions: a store written before migrations (tests/fixtures/store-v0.db, written by
commit 036ce14) opens and answers every query command, migrations run on it, and files that are
not ours, or are newer than this code, are refused without being touched."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from edgeexplore.cli import cli, main
from edgeexplore.latency import get_backend
from edgeexplore.latency.base import device_fingerprint
from edgeexplore.store import db, migrate, open_store

FIXTURE = Path(__file__).parent / "fixtures" / "store-v0.db"


@pytest.fixture()
def older(tmp_path) -> Path:
    """A copy of the store 036ce14 wrote (never the committed file itself)."""
    path = tmp_path / "older.db"
    shutil.copy(FIXTURE, path)
    return path


def run_json(args: list[str]):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_error(args: list[str], capsys) -> str:
    """Run a command that must fail: exit status 1 and one line on stderr, which is returned."""
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("Error: "), err
    return err


def schema_sql(path: Path, tables: set[str]) -> dict[str, str]:
    con = sqlite3.connect(path)
    try:
        return {name: sql for name, table, sql in con.execute(
            "SELECT name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL")
            if table in tables}
    finally:
        con.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def versions(path: Path) -> tuple[list, list]:
    """(our version table's rows, Optuna's alembic_version rows)."""
    con = sqlite3.connect(path)
    try:
        ours = con.execute(f"SELECT version_num FROM {migrate.VERSION_TABLE}").fetchall()
        theirs = con.execute("SELECT version_num FROM alembic_version").fetchall()
        return ours, theirs
    finally:
        con.close()


def test_every_query_command_answers_on_a_store_written_before_migrations(older):
    s = ["--storage", str(older)]
    rows = run_json(["trials", "list", "--format", "json", *s])
    assert [(r["id"], r["study"], r["state"]) for r in rows] == (
        [(i, "tiny", "complete") for i in (1, 2, 3)]
        + [(i, "ablation:t", "complete") for i in range(4, 10)])
    assert [r["accuracy"] for r in rows[:3]] == [0.1, 0.05, 0.05]
    assert rows[0]["latency_ms"] == 1.304335 and rows[0]["flops"] == 909568
    assert rows[0]["blocks"] == "conv,lgl,lgl,lgl" and rows[0]["depths"] == "1,2,2,1"

    shown = run_json(["trials", "show", "1", "--format", "json", *s])
    assert shown["study"] == "tiny" and shown["arch_hash"] == "6a92d3cd91427464"
    assert shown["config"]["stages"][0]["block"] == "conv"

    result = CliRunner().invoke(cli, ["trials", "export", *s], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("id,study,") and len(lines) == 10  # header + 9 trials

    studies = {st["name"]: st for st in run_json(["studies", "--format", "json", *s])}
    assert studies["tiny"]["trials"] == 3 and studies["tiny"]["best"]["accuracy"] == 0.1
    assert studies["ablation:t"]["states"] == {"complete": 6}

    front = run_json(["pareto", "--study", "tiny", "--format", "json", *s])
    assert [p["id"] for p in front["front"]] == [1]
    # The store's cached preset timings are of the model as built; latency now times the
    # deployable (fused) form, whose settings differ, so the presets are timed afresh.
    presets = {p["name"]: p["latency_ms"] for p in front["presets"]}
    assert set(presets) == {"edgevit_xxs", "edgevit_xs", "edgevit_s"}
    assert all(v > 0 for v in presets.values())

    report = run_json(["ablation-show", "t", "--format", "json", *s])
    assert report["component"] == "local-agg" and report["flops_target"] == 6_000_000
    base = report["variants"][0]
    assert base["baseline"] and base["accuracy_per_seed"] == {"0": pytest.approx(29.1666667),
                                                             "1": 25.0}

    # opening it recorded our schema revision beside Optuna's own, which is untouched
    assert versions(older) == ([(migrate.head(),)], [("v3.2.0.a",)])
    # and Optuna (its CLI included) still reads its study
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{older}")
    assert [t.number for t in study.trials] == [0, 1, 2]
    optuna_cli = [sys.executable, "-c", "from optuna.cli import main; main()"]
    out = subprocess.run([*optuna_cli, "studies", "--storage", f"sqlite:///{older}", "-f", "json"],
                         check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert {s["name"]: s["n_trials"] for s in json.loads(out.stdout)}["tiny"] == 3


def test_the_lut_backend_reads_the_older_stores_table(older):
    """The older store's lookup table is read after the upgrade, and kept; its units were timed
    on the model as built, and the backends now time the deployable (fused) form, whose
    settings differ, so the units are timed afresh beside them instead of being mixed in."""
    base = get_backend("torch-cpu", threads=1).describe_device()
    if device_fingerprint(base) != "a1c9b6116b476f80":
        pytest.skip("the fixture's lookup table was timed on another kind of machine")
    con = sqlite3.connect(older)
    before = con.execute("SELECT count(*) FROM latency_lut_units").fetchone()[0]
    con.close()
    out = run_json(["measure", "edgevit_xxs", "--resolution", "64", "--backend", "lut",
                    "--threads", "1", "--json", "--storage", str(older)])
    extra = out["latency"]["extra"]
    assert before > 0 and extra["units_timed_now"] > 0 and out["latency"]["median_ms"] > 0
    con = sqlite3.connect(older)
    after = con.execute("SELECT count(*) FROM latency_lut_units").fetchone()[0]
    con.close()
    assert after == before + extra["units_timed_now"]


def test_a_new_store_has_exactly_the_schema_036ce14_wrote(tmp_path):
    """...for the tables of that time; later revisions add tables of their own beside them."""
    ours = migrate.our_tables() - {migrate.VERSION_TABLE}
    open_store(str(tmp_path / "new.db"))
    con = sqlite3.connect(FIXTURE)
    then = ours & {n for (n,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert schema_sql(tmp_path / "new.db", then) == schema_sql(FIXTURE, then)


def test_the_table_classes_match_the_migrations(tmp_path):
    """A table or column changed without a migration shows up here (add a revision for it)."""
    st = open_store(str(tmp_path / "new.db"))
    with st.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": migrate.VERSION_TABLE})
        assert compare_metadata(ctx, db.Base.metadata) == []


NEW_COLUMN = '''
    """Add trial_results.note (a test revision).

    Revision ID: 0099
    Revises: {head}
    """
    import sqlalchemy as sa
    from alembic import op

    revision = "0099"
    down_revision = "{head}"


    def upgrade() -> None:
        op.add_column("trial_results", sa.Column("note", sa.Text(), nullable=True))
        op.execute("UPDATE trial_results SET note = 'from ' || study")


    def downgrade() -> None:
        op.drop_column("trial_results", "note")
'''


def test_a_migration_adding_a_column_runs_on_the_older_store(older, tmp_path, monkeypatch,
                                                              capsys):
    folder = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    # on top of the newest revision, whichever that is by now
    (folder / "versions" / "0099_note.py").write_text(
        textwrap.dedent(NEW_COLUMN).replace("{head}", migrate.head()))
    monkeypatch.setattr(migrate, "MIGRATIONS", folder)
    assert main(["store", "version", "--storage", str(older)]) == 0
    assert "revision none (written before migrations), this edgeexplore's is 0099" in \
        capsys.readouterr().out
    assert main(["store", "upgrade", "--storage", str(older)]) == 0
    assert "upgraded from schema revision none (written before migrations) to 0099" in \
        capsys.readouterr().out
    con = sqlite3.connect(older)
    notes = con.execute("SELECT id, note FROM trial_results ORDER BY id").fetchall()
    con.close()
    assert notes == [(i, "from tiny") for i in (1, 2, 3)] + [
        (i, "from ablation:t") for i in range(4, 10)]
    assert versions(older) == ([("0099",)], [("v3.2.0.a",)])
    assert main(["store", "upgrade", "--storage", str(older)]) == 0
    assert "already at schema revision 0099" in capsys.readouterr().out
    # the commands still read it
    rows = run_json(["trials", "list", "--format", "json", "--storage", str(older)])
    assert len(rows) == 9


def test_a_store_from_a_newer_edgeexplore_is_refused_untouched(older, capsys):
    con = sqlite3.connect(older)
    con.execute(f"CREATE TABLE {migrate.VERSION_TABLE} (version_num VARCHAR(32) PRIMARY KEY)")
    con.execute(f"INSERT INTO {migrate.VERSION_TABLE} VALUES ('9999')")
    con.commit()
    con.close()
    before = digest(older)
    for args in (["trials", "list"], ["store", "upgrade"], ["measure", "edgevit_xxs"]):
        err = one_error([*args, "--storage", str(older)], capsys)
        assert "schema revision '9999', written by a newer edgeexplore" in err
        assert "upgrade edgeexplore to use it" in err
    assert digest(older) == before


def test_a_database_of_another_application_is_left_byte_identical(tmp_path, capsys):
    path = tmp_path / "notes.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    con.execute("INSERT INTO notes (body) VALUES ('keep me')")
    con.commit()
    con.close()
    before = digest(path)
    s = ["--storage", str(path)]
    for args in (["trials", "list"], ["trials", "show", "1"], ["trials", "export"], ["studies"],
                 ["pareto"], ["ablation-show", "x"], ["store", "version"], ["store", "upgrade"]):
        err = one_error([*args, *s], capsys)
        assert err == f"Error: sqlite:///{path} holds no edgeexplore store (no table of ours): " \
                      "pass --storage of a store edgeexplore wrote"
    for args in (["measure", "edgevit_xxs"], ["ablate", "local-agg", "--quick"]):
        err = one_error([*args, *s], capsys)
        assert err.startswith(f"Error: sqlite:///{path} is a database of another application "
                              "(tables notes) and edgeexplore will not add its tables to it")
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]  # no -wal / -shm either


def test_reading_a_missing_store_creates_nothing(tmp_path, capsys):
    path = tmp_path / "none.db"
    for args in (["trials", "list"], ["studies"], ["store", "version"]):
        err = one_error([*args, "--storage", str(path)], capsys)
        assert err == f"Error: no database at {path} (run `edgeexplore search` first, or pass " \
                      "--storage)"
    assert not path.exists()


def test_a_new_store_beside_optunas_tables(tmp_path):
    """A database Optuna made first (e.g. `optuna create-study`) gets our tables beside its own."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="theirs", storage=url)
    st = open_store(url)
    with st.engine.connect() as conn:
        assert migrate.current(conn) == migrate.head()
    assert versions(tmp_path / "optuna.db")[1] != []  # Optuna's own version row is still there
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["theirs"]
