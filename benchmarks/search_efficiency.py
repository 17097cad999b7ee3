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
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState
from sqlalchemy import delete, select

from edgeexplore import store
from edgeexplore.analysis.pareto import hypervolume, reference_point
from edgeexplore.evaluation import (
    DataSpec,
    LatencySpec,
    TrainingSpec,
    TrialRow,
    evaluate,
    new_trial_row,
)
from edgeexplore.search.recipe import StudyRecipe
from edgeexplore.search.samplers import constraint_violations, make_sampler
from edgeexplore.search.space import SearchSpace
from edgeexplore.search.tabular import Table, TabularObjective, enumerate_space, run_sampler
from edgeexplore.store import TrialResult, db

HERE = Path(__file__).resolve().parent
SPACE = HERE / "search_efficiency_space.yaml"
STORE = HERE / "search_efficiency.db"
#: the study name the table's rows carry in the store
TABLE = "tabular-edgevit-cifar"
#: short enough that 256 trainings fit in well under an hour on 2 loaded cores; 3 epochs on
#: 2,000 images still separate 20k-param from 200k-param models
#: (docs/search.md, "How good is the search?")
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

    def check_latency(self, cfg, measurement) -> str | None:
        return self.cons.check_latency(float(measurement.median_ms))


#: the samplers compared, as a study recipe's ``sampler`` entry names them (label -> entry)
SAMPLERS = {
    "random": {"name": "random"},
    "nsga2 pop 4": {"name": "nsga2", "population_size": 4},
    "nsga2 pop 8": {"name": "nsga2", "population_size": 8},
    "nsga2 pop 16": {"name": "nsga2", "population_size": 16},
    "tpe": {"name": "tpe"},
    "tpe startup 10": {"name": "tpe", "n_startup_trials": 10},
    "gp": {"name": "gp"},
    "nni-evolution": {"name": "nni-evolution"},
}
BUDGETS = (10, 20, 30, 60)
#: GP refits a Gaussian process and optimises its acquisition at every trial (seconds each on
#: a loaded 2-core machine, where the others take milliseconds): it runs fewer seeds
SLOW = {"gp": 3}
OBJECTIVES = ["accuracy: max", "latency_ms: min"]


def recipe_for(entry: dict) -> StudyRecipe:
    return StudyRecipe.from_dict({"space": str(SPACE), "objectives": OBJECTIVES,
                                  "sampler": entry})


def hypervolumes(study: optuna.Study, objectives, ref: np.ndarray, total: float
                 ) -> list[float]:
    """Normalised hypervolume after each budget's first N evaluated trials."""
    done = [t.values for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return [hypervolume(np.array(done[:n]), objectives, ref) / total if done else 0.0
            for n in BUDGETS]


def compare(table: Table, labels: list[str], seeds: int, limit: str | None,
            slow: dict[str, int]) -> None:
    """Run every sampler with ``seeds`` seeds against the table and print the ratios to random."""
    space = SearchSpace.load(SPACE)
    if limit:
        key, _, value = limit.partition("=")
        space = replace(space, constraints=replace(space.constraints, **{key: float(value)}))
    rec = recipe_for({"name": "random"})
    objectives = rec.objectives
    feasible = [e for e in table.entries.values()
                if not e.infeasible and not any(v > 0 for v in
                                                constraint_violations(space.constraints, e.values))]
    points = np.array([[e.values[o.name] for o in objectives] for e in feasible])
    ref = reference_point(points, objectives)
    total = hypervolume(points, objectives, ref)
    print(f"\n{len(table)} architectures, {len(feasible)} feasible"
          + (f" under {limit}" if limit else "") + f"; {seeds} seeds per sampler")
    results: dict[str, np.ndarray] = {}
    for label in labels:
        aware = label.endswith("+constraints")
        entry = SAMPLERS[label.removesuffix(" +constraints")]
        recipe = recipe_for(entry)
        objective = TabularObjective(space, table, objectives, constraint_aware=aware)
        n = min(seeds, slow.get(entry["name"], seeds))
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs = [hypervolumes(run_sampler(lambda seed, r=recipe: make_sampler(r, seed),
                                             objective, max(BUDGETS), seed), objectives, ref, total)
                    for seed in range(n)]
        results[label] = np.array(runs)
        print(f"  {label}: {n} seeds, {time.perf_counter() - t:.1f} s", file=sys.stderr,
              flush=True)
    base = np.median(results["random"], axis=0)
    print("| sampler | seeds | " + " | ".join(f"{n} trials" for n in BUDGETS) + " |")
    print("|---|---|" + "---|" * len(BUDGETS))
    for label, hv in results.items():
        cells = []
        for j in range(len(BUDGETS)):
            ratio = hv[:, j] / base[j]
            q1, med, q3 = np.percentile(ratio, [25, 50, 75])
            beat = float(np.mean(hv[:, j] > base[j]))
            cells.append(f"{med:.2f} [{q1:.2f}-{q3:.2f}] {beat:.0%}")
        print(f"| {label} | {len(hv)} | " + " | ".join(cells) + " |")
    # the whole table's front scores 1 (hypervolumes are normalised by it): no sampler can
    # exceed 1 / random's median, which is how much room random leaves at each budget
    print("| (ceiling: the whole table's front) | - | "
          + " | ".join(f"{1 / b:.2f}" for b in base) + " |")
    print("cells: median [interquartile range] of the hypervolume ratio to random's median, "
          "share of seeds above random's median")


def main(argv: list[str] | None = None) -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", default=str(STORE), help="the table's store file")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--no-build", action="store_true",
                    help="compare on the rows built so far (a partial table)")
    ap.add_argument("--limit", type=int, help="train at most this many architectures now")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--gp-seeds", type=int, default=SLOW["gp"], help="seeds of the slow GP")
    ap.add_argument("--samplers", default=",".join(k for k in SAMPLERS if k != "gp"),
                    help="comma-separated labels of SAMPLERS (random is always included; gp is "
                         "left out by default: minutes per seed here)")
    ap.add_argument("--constraint", default="max_params=60000",
                    help="the limit of the constrained comparison (a space constraint key=value); "
                         "'' skips it")
    args = ap.parse_args(argv)
    url = db.normalise_url(args.store)
    t = time.perf_counter()
    table = Table.from_store(url, TABLE) if args.no_build else build(url, limit=args.limit)
    print(f"table: {len(table)} architectures ({table.seconds / 60:.1f} min of evaluation "
          f"stored; this run {time.perf_counter() - t:.0f} s)")
    if args.build_only:
        return 0
    labels = ["random"] + [x for x in args.samplers.split(",") if x and x != "random"]
    slow = {"gp": args.gp_seeds}
    compare(table, labels, args.seeds, None, slow)
    if args.constraint:
        compare(table, ["random", "nsga2 pop 8", "tpe", "tpe +constraints"], args.seeds,
                args.constraint, slow)
    return 0


if __name__ == "__main__":
    sys.exit(main())
