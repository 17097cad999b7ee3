"""How fast the store answers questions: filtered ``trials list`` and ``pareto`` at 1k-100k trials.

Builds synthetic stores (bulk inserts through store.py's tables; no training, no timing) of 1k,
10k and 100k trials in a temporary folder, then times, in this process through the real CLI
(click's CliRunner on ``edgeexplore.cli.cli``; interpreter start-up excluded), the first run and
the median wall and CPU time of a few more runs of:

* ``trials list --where 'latency_ms < 10 and accuracy > 0.6 and stage3.block == "lgl"'
  --sort -accuracy --limit 50`` (table output);
* the same filter without ``--limit`` as CSV (every matching row formatted);
* ``pareto --objectives accuracy:max,latency_ms:min --no-presets`` (table: front, hypervolume,
  knee) and the three-objective ``accuracy:max,latency_ms:min,params:min``.

Target: under one second at 10k trials.  Usage: ``uv run python benchmarks/query_speed.py
[--sizes 1000,10000,100000] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import insert

from edgeexplore import store
from edgeexplore.cli import cli
from edgeexplore.config import ArchConfig, StageConfig
from edgeexplore.store import db, schema

WHERE = 'latency_ms < 10 and accuracy > 0.6 and stage3.block == "lgl"'


def random_arch(rng: random.Random) -> ArchConfig:
    stages = []
    for i in range(4):
        head_dim = rng.choice([16, 32])
        width = head_dim * rng.choice([1, 2, 3, 4]) * 2 ** i
        block = rng.choice(["lgl", "lgl", "sra", "conv"])
        stages.append(StageConfig(
            depth=rng.randint(1, 4), width=width, heads=width // head_dim,
            mlp_ratio=rng.choice([2.0, 3.0, 4.0]), sample_rate=rng.choice([1, 2, 4]) if i < 3
            else 1, block=block,
            options={"local_agg": rng.choice(["conv", "lsa"])} if block == "lgl" else {},
        ))
    return ArchConfig(stages=tuple(stages), resolution=(224, 224), num_classes=1000)


def build_store(path: Path, n: int, seed: int = 0) -> str:
    """A store of ``n`` trials in 4 studies over up to 20k distinct architectures."""
    url = f"sqlite:///{path}"
    rng = random.Random(seed)
    archs: dict[str, dict] = {}
    costs: dict[str, tuple[int, int]] = {}
    hashes = []
    for _ in range(min(n, 20_000)):
        cfg = random_arch(rng)
        if cfg.hash in archs:
            hashes.append(cfg.hash)
            continue
        size = 56
        flops = sum(st.depth * st.width ** 2 * 12 * (size >> k) ** 2
                    for k, st in enumerate(cfg.stages))
        params = sum(st.depth * st.width ** 2 * 12 for st in cfg.stages)
        costs[cfg.hash] = (flops, params)
        archs[cfg.hash] = dict(
            hash=cfg.hash, config=cfg.to_json(), description=cfg.describe(), macro=cfg.macro,
            resolution="224x224", num_classes=1000, params=params, flops=flops,
            activations=flops // 40, depths=",".join(map(str, cfg.depths)),
            widths=",".join(map(str, cfg.widths)), **schema._stage_columns(cfg),
        )
        hashes.append(cfg.hash)
    rows = []
    for i in range(n):
        h = hashes[i % len(hashes)]
        flops, params = costs[h]
        state = store.COMPLETE if rng.random() < 0.85 else rng.choice(
            [store.INFEASIBLE, store.PRUNED, store.FAILED])
        done = state == store.COMPLETE
        acc = 0.35 + 0.5 * (1 - math.exp(-flops / 1e9)) + rng.gauss(0, 0.03)
        lat = 0.5 + flops / 2e8 * rng.uniform(0.8, 1.25)
        rows.append({
            "study": f"study{i % 4}", "number": i // 4, "arch_hash": h, "state": state,
            "seed": 0, "accuracy": acc if done else None,
            "latency_ms": lat if done else None,
            "latency_p90_ms": lat * 1.05 if done else None, "flops": flops, "params": params,
            "backend": "torch-cpu", "resolution": "224x224", "data": "synthetic", "epochs": 5,
            "curve": json.dumps([{"epoch": e, "val_acc": acc * (e + 1) / 5} for e in range(5)]),
        })
    engine = db.get_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(store.Architecture), list(archs.values()))
        for start in range(0, n, 20_000):
            conn.execute(insert(store.TrialResult), rows[start:start + 20_000])
    return url


def timed(args: list[str], repeat: int) -> tuple[float, float, float, str]:
    """(first run, median of the next ``repeat``; wall and CPU seconds) and the last output.

    CPU time (this process's) is printed beside wall time because the benchmark often shares
    its cores with other work: wall time then measures the neighbours as much as the query.
    """
    runner = CliRunner()
    walls, cpus = [], []
    out = ""
    for _ in range(repeat + 1):
        t, c = time.perf_counter(), time.process_time()
        res = runner.invoke(cli, args, catch_exceptions=False)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
        if res.exit_code != 0:
            raise SystemExit(f"{' '.join(args)} failed: {res.output}")
        out = res.output
    return walls[0], statistics.median(walls[1:]), statistics.median(cpus[1:]), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'trials':>8} {'build s':>8}  {'query':<44} {'first s':>8} {'median s':>9} "
          f"{'CPU s':>7}  result")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            t = time.perf_counter()
            url = build_store(Path(tmp) / f"q{n}.db", n)
            build = time.perf_counter() - t
            queries = [
                ("trials list --where .. --limit 50", ["trials", "list", "--where", WHERE,
                                                       "--sort", "-accuracy", "--limit", "50"]),
                ("trials list --where .. --format csv (all)", ["trials", "list", "--where", WHERE,
                                                               "--format", "csv"]),
                ("pareto accuracy, latency", ["pareto", "--no-presets", "--objectives",
                                              "accuracy:max,latency_ms:min"]),
                ("pareto accuracy, latency, params", ["pareto", "--no-presets", "--objectives",
                                                      "accuracy:max,latency_ms:min,params:min"]),
            ]
            for label, q in queries:
                first, med, cpu, out = timed([*q, "--storage", url], args.repeat)
                if "csv" in q:
                    result = f"{out.count(chr(10)) - 1} rows"
                elif q[0] == "pareto":
                    front = next(ln for ln in out.splitlines() if "Pareto front:" in ln)
                    result = front.split("Pareto front:")[1].split("(")[0].strip()
                else:
                    result = out.split(" trials", 1)[0].split()[-1] + " rows"
                print(f"{n:>8} {build:>8.1f}  {label:<44} {first:>8.3f} {med:>9.3f} "
                      f"{cpu:>7.3f}  {result}")
                build = 0.0
            db.close_all()  # let the temporary file go


if __name__ == "__main__":
    main()
