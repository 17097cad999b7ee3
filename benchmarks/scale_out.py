"""How a study scales over worker processes on one PostgreSQL store, and what the store costs.

    uv run python benchmarks/scale_out.py [--url postgresql+psycopg://user@host/db]
        [--workers 1,2,4,8] [--trial-s 2] [--trials 5] [--overhead-trials 10]

Trials are fixed sleeps (``--trial-s``), so the only thing that can keep N workers from N times
one worker's throughput is the shared store. Each trial walks our path through it: an Optuna
``ask`` with four suggested parameters (on the RDB storage ``edgeexplore search`` opens), the
insert of our ``trial_results`` row in state running, the sleep, the update of that row to
complete with its metrics, and the ``tell`` of two objective values. Workers are separate
processes (as on separate hosts) that open the store, wait at a barrier, then each run
``--trials`` trials; trials per minute are counted from the barrier to the last worker's end.

Printed:
  * per worker count: trials per minute, the ratio to linear (N times one worker's rate) and to
    the ideal (N x 60 / trial-s);
  * the per-trial store overhead (ask + insert + update + tell, the sleep excluded) in ms,
    median and p90, SQLite file vs PostgreSQL, with 1 and with 8 processes hammering the store
    back to back (no sleep).

Without ``--url`` it starts a throwaway PostgreSQL server (tests/pgserver.py: a Unix socket,
fsync off, as in the tests; a real server with fsync on pays a WAL flush per commit).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import optuna
from sqlalchemy import update

from edgeexplore import store
from edgeexplore.search.study import optuna_storage
from edgeexplore.store import db

PARTS = ("ask", "insert", "update", "tell")


def one_trial(study: optuna.Study, url: str, trial_s: float) -> dict[str, float]:
    """A trial that sleeps instead of training; returns seconds spent in each store step."""
    t0 = time.perf_counter()
    trial = study.ask()
    trial.suggest_categorical("block", ["conv", "lgl", "sra"])
    trial.suggest_int("depth", 1, 4)
    trial.suggest_int("width", 16, 128, step=16)
    trial.suggest_float("mlp_ratio", 2.0, 4.0, step=0.5)
    t1 = time.perf_counter()
    with db.session_scope(url) as s:
        row = store.TrialResult(study=study.study_name, state=store.RUNNING, number=trial.number,
                                optuna_study_id=study._study_id, optuna_trial_id=trial._trial_id,
                                hostname=socket.gethostname(), pid=mp.current_process().pid,
                                heartbeat_at=db.utcnow())
        s.add(row)
        s.flush()
        row_id = row.id
    t2 = time.perf_counter()
    time.sleep(trial_s)
    t3 = time.perf_counter()
    accuracy, latency = 0.5 + trial.number * 1e-4, 1.0 + trial.number * 1e-3
    with db.session_scope(url) as s:
        s.execute(update(store.TrialResult).where(store.TrialResult.id == row_id).values(
            state=store.COMPLETE, accuracy=accuracy, latency_ms=latency,
            finished_at=db.utcnow()))
    t4 = time.perf_counter()
    study.tell(trial, [accuracy, latency])
    t5 = time.perf_counter()
    return {"ask": t1 - t0, "insert": t2 - t1, "update": t4 - t3, "tell": t5 - t4}


def _quiet() -> None:
    """No "A new study created" lines, nor Optuna's hint that its heartbeats are meant for
    Study.optimize (ask/tell here, as in ``edgeexplore search``)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", message="Heartbeat of storage")


def worker(url: str, name: str, trials: int, trial_s: float, barrier, results) -> None:
    _quiet()
    study = optuna.load_study(study_name=name, storage=optuna_storage(url),
                              sampler=optuna.samplers.RandomSampler())
    db.get_engine(url)  # connect (and create our tables) before the clock starts
    barrier.wait()
    results.put([one_trial(study, url, trial_s) for _ in range(trials)])


def run(url: str, workers: int, trials: int, trial_s: float) -> tuple[float, list[dict]]:
    """Wall seconds from the barrier to the last worker's end, and every trial's timings."""
    name = f"scale-{workers}-{uuid.uuid4().hex[:6]}"
    optuna.create_study(study_name=name, storage=optuna_storage(url),
                        directions=["maximize", "minimize"])
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(url, name, trials, trial_s, barrier, results))
             for _ in range(workers)]
    for p in procs:
        p.start()
    barrier.wait()
    started = time.perf_counter()
    timings = [t for _ in procs for t in results.get()]
    wall = time.perf_counter() - started
    for p in procs:
        p.join()
    return wall, timings


def _ms(timings: list[dict], part: str | None = None) -> tuple[float, float]:
    values = sorted(1e3 * (t[part] if part else sum(t[p] for p in PARTS)) for t in timings)
    return statistics.median(values), values[int(0.9 * (len(values) - 1))]


def scaling(url: str, counts: list[int], trials: int, trial_s: float) -> None:
    print(f"\nScale-out on {db.shown(url)}: {trials} trials of {trial_s:g} s per worker")
    print(f"{'workers':>7} {'trials/min':>10} {'vs linear':>9} {'vs ideal':>8} "
          f"{'store ms/trial (median, p90)':>29}")
    base = None
    for n in counts:
        wall, timings = run(url, n, trials, trial_s)
        rate = 60 * len(timings) / wall
        base = base or rate / n
        med, p90 = _ms(timings)
        print(f"{n:>7} {rate:>10.1f} {rate / (n * base):>9.3f} "
              f"{rate / (n * 60 / trial_s):>8.3f} {med:>19.1f}, {p90:.1f}")


def overhead(urls: dict[str, str], trials: int) -> None:
    print(f"\nStore overhead per trial, no sleep, {trials} trials per process (ms)")
    print(f"{'store':<10} {'procs':>5} {'total median':>12} {'p90':>7}  "
          + " ".join(f"{p:>7}" for p in PARTS))
    for label, url in urls.items():
        for n in (1, 8):
            _, timings = run(url, n, trials, 0.0)
            med, p90 = _ms(timings)
            parts = " ".join(f"{_ms(timings, p)[0]:>7.1f}" for p in PARTS)
            print(f"{label:<10} {n:>5} {med:>12.1f} {p90:>7.1f}  {parts}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", help="PostgreSQL URL (default: a throwaway server, tests/pgserver.py)")
    ap.add_argument("--workers", default="1,2,4,8", help="Worker counts, comma-separated.")
    ap.add_argument("--trial-s", type=float, default=2.0, help="Seconds each trial sleeps.")
    ap.add_argument("--trials", type=int, default=5, help="Trials per worker in the scale-out.")
    ap.add_argument("--overhead-trials", type=int, default=10,
                    help="Trials per process in the overhead comparison.")
    args = ap.parse_args()
    _quiet()
    server = None
    url = args.url
    if url is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        import pgserver

        server = pgserver.start()
        url = server.create_database()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            scaling(url, [int(n) for n in args.workers.split(",")], args.trials, args.trial_s)
            overhead({"sqlite": f"sqlite:///{Path(tmp) / 'bench.db'}", "postgresql": url},
                     args.overhead_trials)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
