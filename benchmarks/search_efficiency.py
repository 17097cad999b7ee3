"""How much better than random sampling is each sampler? A tabular benchmark of our own space.

Every architecture of ``benchmarks/search_efficiency_space.yaml`` (256, a categorical sub-space of
edgevit-cifar) is trained once with a short recipe on a CIFAR-10 subset and timed on one CPU
thread, through the evaluation pipeline, into ``benchmarks/search_efficiency.db`` (git-ignored).
Building that table is a one-off (resumable: each architecture's row is committed when it
finishes, a rerun continues with the rest); afterwards a sampler's trial looks its result up
(:mod:`edgeexplore.search.tabular`), so many seeds per sampler cost seconds.

Per sampler and budget (evaluated trials; infeasible ones do not count, as in a search) it prints
the median and interquartile range of the hypervolume ratio to random's median at that budget,
and the share of seeds whose hypervolume beats that median. Hypervolume is of accuracy x latency
with the reference point (worst accuracy, worst latency) of the whole table, normalised by the
table's own hypervolume.

    uv run python benchmarks/search_efficiency.py                # build if needed, then compare
    uv run python benchmarks/search_efficiency.py --build-only
    uv run python benchmarks/search_efficiency.py --seeds 40 --samplers tpe,random
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sqlalchemy import delete, select

from edgeexplore import store
from edgeexplore.evaluation import (
    DataSpec,
    LatencySpec,
    TrainingSpec,
    TrialRow,
    evaluate,
    new_trial_row,
)
from edgeexplore.search.space import SearchSpace
from edgeexplore.search.tabular import Table, enumerate_space
from edgeexplore.store import TrialResult, db

HERE = Path(__file__).resolve().parent
SPACE = HERE / "search_efficiency_space.yaml"
STORE = HERE / "search_efficiency.db"
#: the study name the table's rows carry in the store
TABLE = "tabular-edgevit-cifar"
#: short enough that 256 trainings fit in well under an hour on 2 loaded cores; 3 epochs on
#: 2,000 images still separate 20k-param from 200k-param models (README, "How good is the search?")
RECIPE = {"epochs": 3, "batch_size": 128, "lr": 3.0e-3, "warmup_epochs": 0.3, "augment": False,
          "weight_decay": 0.05, "label_smoothing": 0.1}
DATA = DataSpec("cifar10", subset=200, val_subset=50)
#: one thread and the thread-CPU clock: latency that other jobs on the machine do not inflate
LATENCY = LatencySpec("torch-cpu", {"budget_s": 0.3, "clock": "thread-cpu"}, batch=1, threads=1)


def build(url: str, seed: int = 0, limit: int | None = None) -> Table:
    """Train and time every architecture not in the table yet; returns the table."""
    import torch

    space = SearchSpace.load(SPACE)
    training = TrainingSpec.proxy(RECIPE, DATA, seed)
    db.open_store(url)
    with db.session_scope(url) as s:
        # rows of a build that was killed mid-training: their architectures are redone
        s.execute(delete(TrialResult).where(TrialResult.study == TABLE,
                                            TrialResult.state.in_((store.RUNNING, store.FAILED))))
        done = set(s.scalars(select(TrialResult.arch_hash).where(TrialResult.study == TABLE)))
        env_id = store.get_or_create_environment(s, store.describe_environment(None)).id
    todo = [c for c in enumerate_space(space) if c is not None and c.hash not in done]
    if limit is not None:
        todo = todo[:limit]
    if not todo:
        return Table.from_store(url, TABLE)
    print(f"building the table: {len(done)} done, {len(todo)} to train and time", flush=True)
    torch.set_num_threads(1)
    bundle = training.load_data(space.resolution[0])
    limits = _Limits(space)
    started = time.perf_counter()
    for i, cfg in enumerate(todo, 1):
        with db.session_scope(url) as s:
            row = new_trial_row(TABLE, training, LATENCY, env_id)
            s.add(row)
            s.flush()
            row_id = row.id
        out = evaluate(cfg, TrialRow(url, row_id), training=training, latency=LATENCY,
                       storage=url, limits=limits, data=bundle, progress=False)
        took = time.perf_counter() - started
        print(f"[{i}/{len(todo)}] {out.state} acc={out.accuracy} lat={out.latency_ms} "
              f"{cfg.describe()} ({took / i:.1f} s/arch)", flush=True)
    return Table.from_store(url, TABLE)


class _Limits:
    """The space's own hard limits, as the search checks them."""

    def __init__(self, space: SearchSpace) -> None:
        self.cons = space.constraints

    def check_cost(self, params: int, flops: int) -> str | None:
        return self.cons.check_cost(params, flops)

    def check_latency(self, cfg, measurement) -> str | None:  # noqa: ANN001 - pipeline protocol
        return self.cons.check_latency(float(measurement.median_ms))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", default=str(STORE), help="the table's store file")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--limit", type=int, help="train at most this many architectures now")
    args = ap.parse_args(argv)
    url = db.normalise_url(args.store)
    t = time.perf_counter()
    table = build(url, limit=args.limit)
    print(f"table: {len(table)} architectures ({table.seconds / 60:.1f} min of evaluation "
          f"stored; this run {time.perf_counter() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
