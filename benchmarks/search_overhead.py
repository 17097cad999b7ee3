"""Where a search trial's wall time goes, and what proxy training costs against a bare loop.

Runs a study (default: studies/quickstart.yaml) for a few trials into a temporary database, then
prints per-trial timings from the store: sampling, cost counting, latency timing, training and
store writes, plus the loop's own time between trials (Optuna ask/tell, budget bookkeeping).
"Overhead" is everything except training and latency timing; the target is under 5% of the wall
time. Then it runs benchmarks/proxy_throughput.py's measurement (proxy images/s over a bare
forward/backward/step loop on the same model and batch; target at least 0.9).

    uv run python benchmarks/search_overhead.py [--recipe studies/quickstart.yaml] [--trials 4]
        [--threads 1] [--skip-throughput]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import torch

from edgeexplore import store
from edgeexplore.search.recipe import StudyRecipe
from edgeexplore.search.study import Budget, run_study
from edgeexplore.store import db

HERE = Path(__file__).resolve().parent


def overhead(recipe_path: Path, trials: int) -> None:
    recipe = StudyRecipe.load(recipe_path)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        started = time.perf_counter()
        run_study(recipe, Budget(trials=trials), name="bench", storage=url, progress=False)
        wall = time.perf_counter() - started
        with db.session_scope(url) as s:
            rows = store.get_trials(s, "bench")
    cols = ("sample_seconds", "cost_seconds", "latency_seconds", "train_seconds",
            "store_seconds", "total_seconds")
    print(f"{recipe_path.name}: {len(rows)} trials in {wall:.1f}s wall "
          f"(setup, data and the loop included)")
    print("  #  state      sample    cost  latency    train   store   other   total")
    sums = dict.fromkeys(cols, 0.0)
    for r in rows:
        vals = {c: getattr(r, c) or 0.0 for c in cols}
        other = vals["total_seconds"] - sum(vals[c] for c in cols[:-1])
        for c in cols:
            sums[c] += vals[c]
        print(f"  {r.number:<2} {r.state:<9} " + " ".join(f"{vals[c]:7.3f}" for c in cols[:-1])
              + f" {other:7.3f} {vals['total_seconds']:7.2f}")
    total = sums["total_seconds"]
    inside = sums["train_seconds"] + sums["latency_seconds"]
    loop = wall - total
    print(f"  sum of trial times {total:.2f}s; loop between trials and setup {loop:.2f}s")
    for c in ("sample_seconds", "cost_seconds", "store_seconds"):
        print(f"  {c.removesuffix('_seconds'):>7}: {sums[c] / total:6.2%} of trial time")
    share_trial = (total - inside) / total
    share_wall = (wall - inside) / wall
    print(f"overhead (outside training and timing): {share_trial:.2%} of trial time, "
          f"{share_wall:.2%} of wall time including setup and the loop (target < 5%)")


def throughput(threads: int) -> None:
    spec = importlib.util.spec_from_file_location("proxy_throughput", HERE / "proxy_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows, last = module.measure("edgevit_xxs", 32, 64, 20, 3, None)
    ratio = statistics.median(r[2] for r in rows)
    print(f"proxy / bare throughput (edgevit_xxs, 32x32, batch 64, {threads} thread(s), "
          f"{last.device}): {ratio:.3f} (target >= 0.9)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=HERE.parent / "studies" / "quickstart.yaml")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    overhead(args.recipe, args.trials)
    if not args.skip_throughput:
        throughput(args.threads)


if __name__ == "__main__":
    main()
