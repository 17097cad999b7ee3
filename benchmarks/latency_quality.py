"""How trustworthy and how cheap is edgeexplore's latency? (issue 3's acceptance benchmark)

Samples 12 architectures across the builder's options (every block kind in ``config.BLOCKS`` and
their options, depths, widths, heads, MLP ratios, sample rates), times them with ``torch-cpu``
in two separate Python processes, and prints:

* the within-session coefficient of variation of each measurement,
* the relative difference of the medians between the two sessions,
* Kendall's tau between the two sessions' rankings,
* the ``lut`` predictor's Kendall tau and mean absolute percentage error against the measured
  medians (mean of both sessions), and how much cheaper a prediction is than a measurement
  (steady state, and amortised over building its table).

Targets (issue 3): session tau >= 0.9, median difference <= 5%, lut tau >= 0.85, >= 20x cheaper.

    uv run python benchmarks/latency_quality.py [--threads 1] [--budget 1.5] [--clock auto]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeexplore.config import BLOCKS, ArchConfig, ConfigError, StageConfig

N_ARCHS = 12
N_CALIBRATION = 3
RESOLUTION = 224


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b (ties counted as neither concordant nor discordant)."""
    n = len(a)
    conc = disc = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif (da > 0) == (db > 0):
                conc += 1
            else:
                disc += 1
    denom = ((conc + disc + ties_a) * (conc + disc + ties_b)) ** 0.5
    return (conc - disc) / denom if denom else 0.0


def sample_stage(rng: random.Random, index: int, block: str) -> StageConfig:
    spec = BLOCKS[block]
    opts: dict[str, Any] = {}
    for name, o in spec.options.items():
        if o.choices:
            opts[name] = rng.choice(o.choices)
        elif isinstance(o.default, bool):
            opts[name] = rng.random() < 0.5
    head_dim = rng.choice((16, 32))
    base = rng.choice((1, 1.5, 2, 3)) * head_dim
    width = int(base * (1, 2, 4, 6)[index] // head_dim * head_dim) or head_dim
    return StageConfig(
        depth=rng.choice((1, 1, 2, 3) if index != 2 else (1, 2, 3, 4)),
        width=width,
        heads=max(width // head_dim, 1),
        mlp_ratio=rng.choice((2.0, 3.0, 4.0)),
        sample_rate=rng.choice((4, 2) if index == 0 else (2, 1) if index < 3 else (1,)),
        block=block,
        options=opts,
    )


def sample_archs(n: int, seed: int,
                 resolutions: tuple[tuple[int, int], ...] = ((RESOLUTION, RESOLUTION),),
                 ) -> list[ArchConfig]:
    """``n`` distinct buildable architectures; every block kind appears in some stage, and the
    resolution is drawn from ``resolutions`` (no draw for a single one: the same stream)."""
    from edgeexplore.models import build

    rng = random.Random(seed)
    kinds = sorted(BLOCKS)
    out: list[ArchConfig] = []
    seen = set()
    attempt = 0
    while len(out) < n:
        attempt += 1
        # Cycle the block kinds so each is covered, then mix them across stages.
        first = kinds[len(out) % len(kinds)]
        stages = []
        try:
            for i in range(4):
                block = first if i == len(out) % 4 else rng.choice(kinds)
                stages.append(sample_stage(rng, i, block))
            res = rng.choice(resolutions) if len(resolutions) > 1 else resolutions[0]
            cfg = ArchConfig(stages=tuple(stages), resolution=res)
            if cfg.hash in seen:
                continue
            build(cfg)  # some option combinations are only rejected by the builder
        except (ConfigError, ValueError, RuntimeError):
            if attempt > 50 * n:
                raise
            continue
        seen.add(cfg.hash)
        out.append(cfg)
    return out


# -- a session: one process timing every architecture ----------------------------------------


def worker(arch_file: str, out_file: str, threads: int, budget: float, clock: str) -> None:
    import torch

    from edgeexplore.latency import get_backend
    from edgeexplore.models import build

    torch.set_num_threads(threads)
    archs = [ArchConfig.from_dict(d) for d in json.loads(Path(arch_file).read_text())]
    backend = get_backend("torch-cpu", threads=threads, budget_s=budget, clock=clock)
    results = []
    for cfg in archs:
        torch.manual_seed(0)
        model = build(cfg).eval()
        m = backend.measure(model, (1, 3, *cfg.resolution))
        results.append({"hash": cfg.hash, "median_ms": m.median_ms, "p10_ms": m.p10_ms,
                        "cv": m.cv, "count": m.count,
                        "wall_s": m.wall_s, "stop": m.stop_reason, "clock": m.extra.get("clock")})
    Path(out_file).write_text(json.dumps(results))


def run_session(arch_file: Path, out_file: Path, args: argparse.Namespace) -> list[dict]:
    cmd = [sys.executable, __file__, "--worker", str(arch_file), str(out_file),
           "--threads", str(args.threads), "--budget", str(args.budget), "--clock", args.clock]
    subprocess.run(cmd, check=True)
    return json.loads(out_file.read_text())


# -- the lut predictor ------------------------------------------------------------------------


def run_lut(archs: list[ArchConfig], calib: list[ArchConfig], db: str,
            args: argparse.Namespace) -> tuple[list[float], float, float, float]:
    """(predictions, seconds to build the table, mean s per cold prediction, per warm one)."""
    import torch

    from edgeexplore.latency import get_backend
    from edgeexplore.models import build
    from edgeexplore.store import open_store

    torch.set_num_threads(args.threads)
    settings = {"threads": args.threads, "budget_s": args.budget, "clock": args.clock}
    lut = get_backend("lut", calibrate=len(calib), **settings)
    lut.use_store(open_store(db))
    t0 = time.perf_counter()
    for cfg in calib:
        torch.manual_seed(0)
        lut.measure(build(cfg).eval(), (1, 3, *cfg.resolution))
    cold = []
    for cfg in archs:
        torch.manual_seed(0)
        cold.append(lut.measure(build(cfg).eval(), (1, 3, *cfg.resolution)).wall_s)
    table_s = time.perf_counter() - t0
    preds, warm = [], []
    for cfg in archs:
        torch.manual_seed(0)
        m = lut.measure(build(cfg).eval(), (1, 3, *cfg.resolution))
        preds.append(m.median_ms)
        warm.append(m.wall_s)
    return preds, table_s, statistics.fmean(cold), statistics.fmean(warm)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--budget", type=float, default=1.5, help="torch-cpu time budget per model (s)")
    p.add_argument("--clock", default="auto", choices=("auto", "wall", "thread-cpu"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", nargs=2, metavar=("ARCHS", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(*args.worker, args.threads, args.budget, args.clock)
        return

    import torch

    torch.set_num_threads(args.threads)
    archs = sample_archs(N_ARCHS + N_CALIBRATION, args.seed)
    archs, calib = archs[:N_ARCHS], archs[N_ARCHS:]
    print(f"{N_ARCHS} architectures at {RESOLUTION}x{RESOLUTION}, torch-cpu, {args.threads} "
          f"thread(s), budget {args.budget} s, clock {args.clock}:")
    for i, cfg in enumerate(archs):
        print(f"  a{i:02d} {cfg.hash} {cfg.describe()}")
    with tempfile.TemporaryDirectory(prefix="latency-quality-") as tmp:
        arch_file = Path(tmp) / "archs.json"
        arch_file.write_text(json.dumps([c.to_dict() for c in archs]))
        t0 = time.perf_counter()
        s1 = run_session(arch_file, Path(tmp) / "s1.json", args)
        s2 = run_session(arch_file, Path(tmp) / "s2.json", args)
        sessions_s = time.perf_counter() - t0
        preds, table_s, cold_s, warm_s = run_lut(archs, calib, str(Path(tmp) / "lut.db"), args)

    m1 = [r["median_ms"] for r in s1]
    m2 = [r["median_ms"] for r in s2]
    mean = [(a + b) / 2 for a, b in zip(m1, m2)]
    diffs = [abs(a - b) / ((a + b) / 2) for a, b in zip(m1, m2)]
    cvs = [r["cv"] for r in s1 + s2]
    apes = [abs(p_ - m) / m for p_, m in zip(preds, mean)]
    measure_s = statistics.fmean(r["wall_s"] for r in s1 + s2)

    print(f"\n{'arch':5} {'session1 ms':>11} {'CV':>6} {'n':>4} {'session2 ms':>11} {'CV':>6} "
          f"{'n':>4} {'diff':>6} {'lut ms':>8} {'error':>6}")
    for i, (a, b) in enumerate(zip(s1, s2)):
        print(f"a{i:02d}   {a['median_ms']:11.2f} {a['cv']:6.1%} {a['count']:4d} "
              f"{b['median_ms']:11.2f} {b['cv']:6.1%} {b['count']:4d} {diffs[i]:6.1%} "
              f"{preds[i]:8.2f} {apes[i]:6.1%}")
    tau = kendall_tau(m1, m2)
    lut_tau = kendall_tau(preds, mean)
    print(f"\nclock used: {s1[0]['clock']}; two sessions took {sessions_s:.0f} s")
    print(f"within-session CV:                  median {statistics.median(cvs):.1%}, "
          f"max {max(cvs):.1%}")
    print(f"between-session median difference:  mean {statistics.fmean(diffs):.2%}, "
          f"median {statistics.median(diffs):.2%}, max {max(diffs):.2%}   (target <= 5%)")
    p10 = [abs(a["p10_ms"] - b["p10_ms"]) / ((a["p10_ms"] + b["p10_ms"]) / 2)
           for a, b in zip(s1, s2)]
    print(f"  (for comparison, p10 difference:  mean {statistics.fmean(p10):.2%}, "
          f"max {max(p10):.2%})")
    print(f"Kendall tau, session 1 vs 2:        {tau:.3f}   (target >= 0.9)")
    print(f"lut Kendall tau vs measured:        {lut_tau:.3f}   (target >= 0.85)")
    print(f"lut MAPE vs measured:               {statistics.fmean(apes):.1%} "
          f"(max {max(apes):.1%}; {N_CALIBRATION} calibration models)")
    print(f"cost per architecture: torch-cpu {measure_s:.3f} s, lut {warm_s:.3f} s with its "
          f"table built -> {measure_s / warm_s:.0f}x cheaper  (target >= 20x)")
    print(f"building the table ({N_CALIBRATION} calibrations + first predictions): "
          f"{table_s:.1f} s, "
          f"i.e. {table_s / N_ARCHS:.2f} s per architecture amortised over these {N_ARCHS} "
          f"({measure_s / (table_s / N_ARCHS):.1f}x cheaper); cold prediction mean {cold_s:.2f} s")


if __name__ == "__main__":
    main()
