"""How good is the learned latency predictor with few measurements? (issue 15's benchmark)

Samples 60 architectures across block kinds, depths, widths and input resolutions (some not
square) and measures each on ``torch-cpu`` and ``onnxruntime`` (1 thread, thread-CPU clock).
Then, for 10, 20, 30 and 40 training measurements, fits :mod:`edgeexplore.latency.predictor` on
that many architectures (chosen by its own diverse selection, as ``predictor fit`` chooses) and
scores it on all the others: the share within ±10% and ±5%, MAPE and Kendall's tau. Both feature
sets are fitted: ``analytic`` (nothing timed but the training architectures) and ``units`` (each
architecture's units timed one by one on the backend, the table the ``lut`` backend keeps).
Baselines: a linear regression on FLOPs alone (fitted on the same training architectures) and
the ``lut`` backend as it predicts by itself (unit sum plus a constant from 3 calibration
models, here the first 3 training architectures).

The truth is measured in ``--rounds`` interleaved rounds (every architecture once per round, the
order rotated and reversed between rounds) and each architecture's latency is the median of its
rounds. On a shared machine one measurement of a model differs from the next by several percent
(memory placement, neighbours), and the machine as a whole drifts between runs; rounds put the
drift on every architecture alike and the median tames the rest. How well the rounds agree with
each other is printed: it is the floor under any predictor's error.

    uv run python benchmarks/latency_predictor.py [--rounds 5] [--storage latency-predictor.db]
        [--truth truth.json]

``--storage`` keeps the unit table, so a second run times no units. The last line is
``within 10%: X% with N measured (backend)`` for the best setting with at most 30 measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency_quality import sample_archs

from edgeexplore.config import ArchConfig
from edgeexplore.latency.predictor import error_report

N_ARCHS = 60
TRAIN_SIZES = (10, 20, 30, 40)
#: 128-224 pixels, some not square; 224² alone would take long on a loaded 2-core machine
RESOLUTIONS = ((128, 128), (160, 160), (192, 192), (224, 224), (160, 128), (224, 160),
               (128, 192), (192, 256))
BACKENDS = ("torch-cpu", "onnxruntime")
SETTINGS = {"threads": 1, "clock": "thread-cpu", "budget_s": 0.4}
LUT_CALIBRATIONS = 3


def measure_rounds(archs: list[ArchConfig], models: list[Any], backend: Any,
                   rounds: int) -> list[list[float]]:
    """Each architecture's medians, one per interleaved round."""
    per_arch: list[list[float]] = [[] for _ in archs]
    t0 = time.perf_counter()
    for r in range(rounds):
        order = list(range(len(archs)))
        shift = (r * 7) % len(order)
        order = order[shift:] + order[:shift]
        if r % 2:
            order.reverse()
        for i in order:
            h, w = archs[i].resolution
            per_arch[i].append(backend.measure(models[i], (1, 3, h, w)).median_ms)
        print(f"  {backend.name}: round {r + 1}/{rounds} ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    return per_arch


def repeatability(per_arch: list[list[float]]) -> str:
    """How well the truth agrees with itself: the median spread (max/min - 1) of a model's
    rounds, and the even rounds' medians scored against the odd rounds' as if a prediction.
    No predictor can be expected to beat that tau by much."""
    spread = statistics.median(max(v) / min(v) - 1 for v in per_arch)
    if len(per_arch[0]) < 2:
        return f"a model's rounds spread {spread:.1%}"
    s = error_report([statistics.median(v[0::2]) for v in per_arch],
                     [statistics.median(v[1::2]) for v in per_arch])
    return (f"a model's rounds spread {spread:.1%} (median); even vs odd rounds: within 10% "
            f"{s['within10']:.0%}, tau {s['tau']:.3f}")


def flops_linear(train: list[int], feats: list, y: list[float]) -> list[float]:
    """Least squares latency = a + b·FLOPs on the training architectures."""
    import numpy as np

    flops = np.array([f.values["flops"] for f in feats])
    a = np.vstack([np.ones(len(train)), flops[train]]).T
    coef, *_ = np.linalg.lstsq(a, np.array(y)[train], rcond=None)
    return list(coef[0] + coef[1] * flops)


def lut_alone(train: list[int], feats: list, y: list[float]) -> list[float]:
    """What the ``lut`` backend predicts: unit sum + the median residual of its calibrations."""
    calib = train[:LUT_CALIBRATIONS]
    constant = statistics.median(y[i] - feats[i].values["units_total"] for i in calib)
    return [f.values["units_total"] + constant for f in feats]


def line(name: str, s: dict[str, float]) -> str:
    return (f"  {name:30} within 10%: {s['within10']:5.0%}  within 5%: {s['within5']:5.0%}  "
            f"MAPE {s['mape']:5.1%}  max {s['max_ape']:5.1%}  tau {s['tau']:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", default="latency-predictor.db",
                   help="store whose unit table is used and grown")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the truth")
    p.add_argument("--truth", type=Path, default=None,
                   help="JSON file of measured rounds: reused when it exists (to compare "
                        "predictor changes on one truth), else written after measuring")
    args = p.parse_args()

    import torch

    from edgeexplore.latency.lut import LUTBackend
    from edgeexplore.latency.predictor import (
        FEATURE_SETS,
        arch_features,
        config_features,
        fit_predictor,
        select_diverse,
        with_units,
    )
    from edgeexplore.latency.registry import get_backend
    from edgeexplore.models import build
    from edgeexplore.store import open_store

    torch.set_num_threads(1)
    store = open_store(args.storage)
    archs = sample_archs(N_ARCHS, args.seed, RESOLUTIONS)
    models = []
    for cfg in archs:
        torch.manual_seed(0)  # the weights measure_arch and the unit table time
        models.append(build(cfg).eval())
    print(f"{N_ARCHS} architectures, resolutions {sorted({c.resolution for c in archs})}, "
          f"1 thread, thread-CPU clock, {args.rounds} interleaved rounds")
    analytic = [arch_features(cfg) for cfg in archs]
    cheap = [config_features(cfg) for cfg in archs]  # what `predictor fit` chooses by
    best = (-1.0, 0, "", 0.0)
    saved = json.loads(args.truth.read_text()) if args.truth and args.truth.exists() else {}
    for name in BACKENDS:
        backend = get_backend(name, **SETTINGS)
        if name in saved:
            rounds = [saved[name][c.hash] for c in archs]
        else:
            rounds = measure_rounds(archs, models, backend, args.rounds)
            saved[name] = {c.hash: r for c, r in zip(archs, rounds)}
            if args.truth:
                args.truth.write_text(json.dumps(saved))
        y = [statistics.median(v) for v in rounds]
        lut = LUTBackend(base=backend, calibrate=0)
        lut.use_store(store)
        t0 = time.perf_counter()
        units = [with_units(f, lut.unit_sums(m, (1, 3, *c.resolution)))
                 for f, m, c in zip(analytic, models, archs)]
        print(f"\n{name}: measured {min(y):.1f}-{max(y):.1f} ms; unit table ready in "
              f"{time.perf_counter() - t0:.0f} s\n  repeatability: {repeatability(rounds)}")
        for n in TRAIN_SIZES:
            train = select_diverse(cheap, n)
            test = [i for i in range(len(archs)) if i not in set(train)]
            truth = [y[i] for i in test]
            print(f" {n} measured, {len(test)} held out")
            for label, feats in (("analytic", analytic), ("units", units)):
                model = fit_predictor([feats[i] for i in train], [y[i] for i in train],
                                      FEATURE_SETS[label])
                s = error_report(model.predict([feats[i] for i in test]), truth)
                print(line(f"learned, {label} ({model.method})", s))
                if n <= 30 and (s["within10"], s["tau"]) > best[0::3]:
                    best = (s["within10"], n, f"{name}, {label} features", s["tau"])
            fl = flops_linear(train, analytic, y)
            print(line("FLOPs-only linear", error_report([fl[i] for i in test], truth)))
            lt = lut_alone(train, units, y)
            print(line(f"lut ({LUT_CALIBRATIONS} calibrations)",
                       error_report([lt[i] for i in test], truth)))
    print(f"within 10%: {best[0]:.0%} with {best[1]} measured ({best[2]}; tau {best[3]:.3f})")


if __name__ == "__main__":
    main()
