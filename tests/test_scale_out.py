"""One study, many worker processes: the study-wide cap, per-command budgets, devices, and a
killed worker's trial recovered and retried by another worker (on SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from tiny import write_one_arch, write_tiny

from edgeexplore.cli import main
from edgeexplore.errors import ConfigError
from edgeexplore.search.devices import parse_devices, pin

ROOT = Path(__file__).resolve().parents[1]

def _recipe(tmp_path: Path, name: str = "tiny.yaml", epochs: int = 1) -> Path:
    return write_tiny(tmp_path, name, epochs=epochs)


def _start(recipe: Path, url: str, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from edgeexplore.cli import run; run()", "search", str(recipe),
         "--storage", url, "--quiet", *args],
        cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out
    return outputs


def _rows(url: str) -> list[dict]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(sa.text(
                "SELECT id, state, number, pid, reason, optuna_trial_id FROM trial_results "
                "WHERE study = 'tiny' ORDER BY id"))]
    finally:
        engine.dispose()


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="tiny", storage=url).get_trials(deepcopy=False)


def _check_exact(url: str, n: int) -> None:
    rows = _rows(url)
    used = [r for r in rows if r["state"] != "infeasible"]
    assert len(used) == n, rows  # the cap, not one more
    assert {r["state"] for r in used} == {"complete"}
    numbers = [r["number"] for r in rows]
    assert len(set(numbers)) == len(numbers)  # no Optuna trial written twice
    states = [t.state.name for t in _trials(url)]
    assert states.count("COMPLETE") == n and "RUNNING" not in states


def _max_trials_race(url: str, recipe: Path) -> None:
    procs = [_start(recipe, url, "--max-trials", "5") for _ in range(4)]
    _finish(procs)
    _check_exact(url, 5)
    # --budget is per command: two commands started together with --budget 2 add 4
    _finish([_start(recipe, url, "--budget", "2") for _ in range(2)])
    _check_exact(url, 9)


@pytest.mark.slow
def test_max_trials_is_exact_across_processes_on_sqlite(tmp_path):
    _max_trials_race(f"sqlite:///{tmp_path / 'm.db'}", _recipe(tmp_path))


@pytest.mark.slow
@pytest.mark.postgres
def test_max_trials_is_exact_across_processes_on_postgresql(tmp_path, pg_url):
    _max_trials_race(pg_url, _recipe(tmp_path))


def _wait_running(url: str, proc: subprocess.Popen, timeout: float = 180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            running = [r for r in _rows(url) if r["state"] == "running"
                       and r["optuna_trial_id"] is not None]
            sampled = running and _trials(url)[-1].params
        except (sa.exc.SQLAlchemyError, KeyError):  # the store or study is still being made
            sampled = False
        if sampled:
            return running[0]
        time.sleep(0.5)
    pytest.fail("the search never started a trial")


@pytest.mark.slow
@pytest.mark.postgres
def test_killed_worker_on_another_host_is_recovered_and_retried(tmp_path, pg_url):
    slow, fast = _recipe(tmp_path, "slow.yaml", epochs=500), _recipe(tmp_path)
    proc = _start(slow, pg_url, "--budget", "1")
    row = _wait_running(pg_url, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # as if its machine were lost: another host, so only its silent heartbeat tells
    engine = sa.create_engine(pg_url)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE trial_results SET hostname = 'lost-host' WHERE id = :i"),
                  {"i": row["id"]})
    engine.dispose()
    time.sleep(2.5)
    (out,) = _finish([_start(fast, pg_url, "--budget", "1", "--retries", "1",
                             env={"EDGEEXPLORE_GRACE_S": "2"})])
    assert "1 trial(s) left running by a stopped worker were marked failed" in out
    rows = _rows(pg_url)
    assert [r["state"] for r in rows if r["state"] != "infeasible"] == ["failed", "complete"]
    assert "interrupted" in rows[0]["reason"] and "lost-host" in rows[0]["reason"]
    dead, retry = _trials(pg_url)[0], _trials(pg_url)[1]
    assert dead.state.name == "FAIL"
    assert retry.state.name == "COMPLETE" and retry.params == dead.params  # same architecture
    assert retry.user_attrs["edgeexplore_attempt"] == 2
    assert retry.user_attrs["retry_of"] == dead.number


def test_devices_parsing():
    assert parse_devices("cpu,cpu") == (["cpu", "cpu"], None)
    devices, note = parse_devices("auto")  # no GPU on the test machines
    assert devices == ["cpu"] and "no CUDA GPU is visible" in note
    with pytest.raises(ConfigError, match="'gpu0' is not a device"):
        parse_devices("cpu,gpu0")
    with pytest.raises(ConfigError, match="cuda:0 does not exist"):
        parse_devices("cuda:0")


def test_cpu_worker_is_pinned_away_from_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    pin("cpu")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_one_worker_per_device(tmp_path, capsys):
    db = tmp_path / "d.db"
    assert main(["search", str(_recipe(tmp_path)), "--devices", "cpu,cpu", "--max-trials", "2",
                 "--storage", str(db), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "workers on cpu, cpu" in out and "study capped at 2" in out
    _check_exact(f"sqlite:///{db}", 2)


@pytest.mark.parametrize(("args", "needle"), [
    (["--devices", "cpu", "--workers", "2"], "--workers and --devices both"),
    (["--max-trials", "0"], "--max-trials must be at least 1"),
    (["--retries", "-1"], "--retries must be 0 or more"),
    ([], "give --budget, --max-trials, or both"),
])
def test_bad_scale_out_options_are_one_line(tmp_path, capsys, args, needle):
    code = main(["search", str(_recipe(tmp_path)), "--storage", str(tmp_path / "b.db"),
                 "--quiet", *args])
    err = capsys.readouterr().err
    assert code != 0 and needle in err and len(err.strip().splitlines()) == 1, err


def test_grace_must_be_a_number(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGEEXPLORE_GRACE_S", "soon")
    code = main(["search", str(_recipe(tmp_path)), "--budget", "1", "--storage",
                 str(tmp_path / "g.db"), "--quiet"])
    assert code != 0 and "EDGEEXPLORE_GRACE_S='soon'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_on_one_architecture_train_it_once(tmp_path, pg_url):
    recipe = write_one_arch(tmp_path, epochs=60)  # long enough that both reach it in training
    _finish([_start(recipe, pg_url, "--budget", "1") for _ in range(2)])
    engine = sa.create_engine(pg_url)
    with engine.connect() as c:
        rows = c.execute(sa.text("SELECT id, state, reused_from, accuracy FROM trial_results "
                                 "ORDER BY id")).all()
        claims_left = c.execute(sa.text("SELECT count(*) FROM training_claims")).scalar()
    engine.dispose()
    assert [r.state for r in rows] == ["complete", "complete"]
    trained = [r for r in rows if r.reused_from is None]
    assert len(trained) == 1  # the other waited for it
    reused = next(r for r in rows if r.reused_from is not None)
    assert reused.reused_from == trained[0].id and reused.accuracy == trained[0].accuracy
    assert claims_left == 0


@pytest.mark.postgres
def test_a_dead_workers_training_claim_is_taken_over(pg_url):
    from edgeexplore.store import claims, db

    with db.session_scope(pg_url) as s:
        assert claims.try_claim(s, "a" * 16, "k" * 16)
    with db.session_scope(pg_url) as s:
        assert not claims.try_claim(s, "a" * 16, "k" * 16)  # held by a live process (this one)
        s.execute(sa.update(claims.TrainingClaim).values(hostname="lost-host",
                                                         heartbeat_at=sa.func.now()
                                                         - sa.text("interval '1 hour'")))
    with db.session_scope(pg_url) as s:
        assert claims.try_claim(s, "a" * 16, "k" * 16)  # its heartbeat is silent: taken over
        held = s.get(claims.TrainingClaim, ("a" * 16, "k" * 16))
        assert held.hostname != "lost-host" and held.pid == os.getpid()


@pytest.mark.slow
def test_a_worker_taken_for_dead_lets_the_retry_own_its_trial(tmp_path):
    """A live worker whose heartbeat went silent past the grace on a starved machine has its
    trial failed by another worker; it must not crash telling Optuna a finished trial."""
    url = f"sqlite:///{tmp_path / 'd.db'}"
    proc = _start(_recipe(tmp_path, epochs=40), url, "--budget", "1")
    row = _wait_running(url, proc)
    storage = optuna.storages.RDBStorage(url)  # what recover_stale in another worker does
    storage.set_trial_state_values(row["optuna_trial_id"], optuna.trial.TrialState.FAIL)
    (out,) = _finish([proc])
    assert "Traceback" not in out and "Cannot tell" not in out
    assert [t.state.name for t in _trials(url)] == ["FAIL"]
