"""The store's tables and query helpers, through the public API (no training here)."""

from __future__ import annotations

import importlib.util
import multiprocessing
import shutil
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from edgeexplore import store
from edgeexplore.config import PRESETS
from edgeexplore.errors import EdgeExploreError
from edgeexplore.search.study import Budget, optuna_storage, parse_budget
from edgeexplore.store import db, migrate

FIXTURE = Path(__file__).parent / "fixtures" / "store-v0.db"


def _cost(params: int, flops: int) -> SimpleNamespace:
    return SimpleNamespace(params=params, flops=flops, activations=7,
                           per_stage={"stem": 1, "stage1": 2})


@pytest.fixture()
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


def test_tables_round_trip_and_flat_columns(url, tmp_path):
    xxs, xs = PRESETS["edgevit_xxs"], PRESETS["edgevit_xs"]
    with db.session_scope(url) as s:
        env = store.get_or_create_environment(s)
        a = store.upsert_architecture(s, xxs, _cost(4_000_000, 560_000_000))
        store.upsert_architecture(s, xs, _cost(6_700_000, 1_140_000_000))
        s.flush()
        assert store.upsert_architecture(s, xxs) is a  # one row per hash
        key = store.train_key({"epochs": 1}, {"spec": "synthetic"}, 0)
        s.add_all([
            store.TrialResult(study="a", number=0, arch_hash=xxs.hash, state=store.COMPLETE,
                              accuracy=0.6, latency_ms=5.0, flops=560_000_000,
                              params=4_000_000, curve='[{"epoch": 1, "val_acc": 0.6}]',
                              train_key=key, environment_id=env.id),
            store.TrialResult(study="a", number=1, arch_hash=xs.hash, state=store.INFEASIBLE,
                              reason="params too many"),
            store.TrialResult(study="b", number=0, arch_hash=xxs.hash, state=store.COMPLETE,
                              accuracy=0.7, train_key="other"),
        ])
    with db.session_scope(url) as s:
        rows = store.get_trials(s, study="a")
        assert [r.state for r in rows] == ["complete", "infeasible"]
        assert [r.id for r in store.get_trials(s, study=["a", "b"], states=[store.COMPLETE])] \
            == [1, 3]
        assert [r.study for r in store.get_trials(s, arch_hash=xxs.hash)] == ["a", "b"]
        reuse = store.find_reusable(s, xxs.hash, key)
        assert reuse is not None and reuse.accuracy == 0.6
        assert store.find_reusable(s, xs.hash, key) is None
        assert store.completed_curves(s, "a") == [[{"epoch": 1, "val_acc": 0.6}]]
        assert store.completed_curves(s, "a", key="nope") == []
        env = rows[0].environment
        assert env.python and env.torch and env.optuna
        assert env.device
    # the architecture is still usable once its session is closed
    assert rows[0].architecture.arch == xxs
    assert rows[0].architecture.per_stage == {"stem": 1, "stage1": 2}

    # plain sqlite3 reads the flat columns; the schema is the documented one
    con = sqlite3.connect(tmp_path / "store.db")
    got = con.execute(
        "SELECT t.accuracy, a.stage3_block, a.stage3_depth, a.depths FROM trial_results t "
        "JOIN architectures a ON a.hash = t.arch_hash WHERE t.study='a' AND t.state='complete'"
    ).fetchall()
    assert got == [(0.6, "lgl", 3, "1,1,3,2")]
    indexes = {r[1] for r in con.execute("PRAGMA index_list('trial_results')")}
    assert {"ix_trial_results_accuracy", "ix_trial_results_latency_ms",
            "ix_trial_results_study_state"} <= indexes


def test_environment_is_deduplicated(url):
    with db.session_scope(url) as s:
        e1 = store.get_or_create_environment(s)
        e2 = store.get_or_create_environment(s)
        assert e1.id == e2.id
        info = store.describe_environment()
        assert info["git_revision"] is None or len(info["git_revision"]) == 40


def test_losing_an_insert_race_returns_the_winners_row(url):
    """Two workers look up the same environment and architecture, find nothing, both insert."""
    xxs = PRESETS["edgevit_xxs"]
    with db.session_scope(url) as loser:
        assert loser.scalar(select(store.Environment)) is None  # looked: nothing there yet
        with db.session_scope(url) as winner:  # meanwhile another process stores both rows
            won = store.get_or_create_environment(winner)
            store.upsert_architecture(winner, xxs, _cost(4_000_000, 560_000_000))
        env = db.add_once(loser, store.Environment(fingerprint=won.fingerprint, details="{}"),
                          fingerprint=won.fingerprint)
        arch = db.add_once(loser, store.Architecture(hash=xxs.hash), hash=xxs.hash)
        loser.add(store.TrialResult(study="s", number=0, arch_hash=arch.hash, state=store.COMPLETE,
                                    seed=0, environment_id=env.id))
    assert env.id == won.id and arch.params == 4_000_000  # the winner's rows, not a crash
    with db.session_scope(url) as s:  # and the loser's own transaction still committed
        assert s.scalar(select(func.count()).select_from(store.TrialResult)) == 1
        assert s.scalar(select(func.count()).select_from(store.Environment)) == 1


def _open_store_and_record_environment(url: str, barrier, results) -> None:
    barrier.wait(timeout=60)  # every process imported and ready: leave the starting line together
    with db.session_scope(url) as s:  # our tables, then the environment row
        env_id = store.get_or_create_environment(s).id
    barrier.wait(timeout=60)  # and again for Optuna's schema
    optuna_storage(url)
    results.put(env_id)


def _open_together(url: str, n: int) -> tuple[list[int | None], set[int]]:
    """``n`` processes open the store at ``url`` at one moment; their exit codes, and the
    environment row ids those that succeeded recorded."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_open_store_and_record_environment, args=(url, barrier, results))
             for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    return [p.exitcode for p in procs], {results.get(timeout=5) for p in procs if p.exitcode == 0}


@pytest.mark.parametrize("start", ["new", "older"])
def test_processes_opening_a_store_together_all_succeed(tmp_path, start):
    """Four processes open a new file, or a store written before migrations, at the same moment:
    one creates or upgrades the schema, the others wait for it and use it."""
    if start == "older":
        shutil.copy(FIXTURE, tmp_path / "race.db")
    url = f"sqlite:///{tmp_path / 'race.db'}"
    exits, env_ids = _open_together(url, 4)
    assert exits == [0] * 4  # no process lost the race with an error
    assert len(env_ids) == 1  # one environment row for all
    con = sqlite3.connect(tmp_path / "race.db")
    assert con.execute(f"SELECT version_num FROM {migrate.VERSION_TABLE}").fetchall() == [
        (migrate.head(),)]
    con.close()


def test_losing_the_race_for_optunas_schema_waits_for_the_winner(url):
    """A process that loses the race to create Optuna's tables on SQLite ("already exists")
    tries again after growing pauses until the winner is done, however long it takes within the
    busy timeout, instead of a few immediate retries that a slow winner outlasts (CI saw that)."""
    done_at = time.monotonic() + 1.0  # the winner finishes stamping a second from now
    calls: list[float] = []

    def create():
        calls.append(time.monotonic())
        if calls[-1] < done_at:
            raise OperationalError("CREATE TABLE alembic_version", {}, sqlite3.OperationalError(
                "table alembic_version already exists"))
        return "schema"

    assert db.create_schema(url, create) == "schema"
    assert 2 <= len(calls) < 15  # paused between tries, did not spin


def test_a_real_schema_error_is_not_retried(url):
    calls = []

    def create():
        calls.append(1)
        raise OperationalError("CREATE TABLE studies", {}, sqlite3.OperationalError(
            "disk I/O error"))

    with pytest.raises(OperationalError):
        db.create_schema(url, create)
    assert len(calls) == 1


@pytest.mark.postgres
def test_hosts_opening_a_new_postgresql_database_together_all_succeed(pg_url):
    """Six processes open one new PostgreSQL database at the same moment (hosts starting a study
    together): our tables and Optuna's are created once, and nobody sees "already exists"."""
    exits, env_ids = _open_together(pg_url, 6)
    assert exits == [0] * 6
    assert len(env_ids) == 1
    with db.open_store(pg_url).engine.connect() as conn:
        assert migrate.current(conn) == migrate.head()


@pytest.mark.parametrize(("url", "message"), [
    ("nosuch://foo", "names no database SQLAlchemy knows"),
    ("postgresql://me:s3cret@127.0.0.1:1/db",
     r"needs the psycopg driver, install it with pip install 'edgeexplore\[postgres\]'"),
])
def test_unusable_database_urls_are_clear_errors(url, message):
    if "psycopg" in message and importlib.util.find_spec("psycopg") is not None:
        pytest.skip("psycopg is installed here, so this URL would try to connect")
    with pytest.raises(EdgeExploreError, match=message) as err:
        db.get_engine(url)
    assert "s3cret" not in str(err.value)  # a password never reaches the terminal


def test_unwritable_database_path_is_a_clear_error(tmp_path):
    with pytest.raises(EdgeExploreError, match="does not exist"):
        db.normalise_url(str(tmp_path / "missing" / "x.db"))


@pytest.mark.parametrize(("text", "budget"), [
    ("4", Budget(trials=4)), ("45m", Budget(seconds=2700)), ("2h", Budget(seconds=7200)),
    ("90s", Budget(seconds=90)), ("1h30m", Budget(seconds=5400)),
])
def test_parse_budget(text, budget):
    assert parse_budget(text) == budget


@pytest.mark.parametrize("text", ["0", "soon", "45 minutes please", "-3", "m"])
def test_bad_budget(text):
    with pytest.raises(EdgeExploreError, match="budget"):
        parse_budget(text)
