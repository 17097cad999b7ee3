"""How good is the learned latency predictor with few measurements? (issue 15's benchmark)

Samples 60 architectures across block kinds, depths, widths and input resolutions (some not
square), measures each on ``torch-cpu`` and ``onnxruntime`` (1 thread, thread-CPU clock, so other
jobs on the machine inflate the numbers as little as possible), then for 10, 20 and 40 training
measurements fits :mod:`edgeexplore.latency.predictor` on that many architectures (chosen by its
own diverse selection) and scores it on all the others: the share within ±10% and ±5%, MAPE and
Kendall's tau. Baselines: a linear regression on FLOPs alone (fitted on the same training
architectures) and, for torch-cpu, the ``lut`` backend (3 calibration models, as it runs today).

Measurements go through the latency cache of ``--storage`` (default: a file in the working
directory), so a second run only fits and scores. ``--measure-only`` stops after measuring.

    uv run python benchmarks/latency_predictor.py [--storage latency-predictor.db] [--no-lut]

The last line is ``within 10%: X% with N measured (backend)`` for the best setting.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

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
SETTINGS = {"threads": 1, "clock": "thread-cpu"}


def measure_all(archs: list[ArchConfig], backend: str, store) -> list[float]:
    from edgeexplore.latency import measure_arch

    out = []
    t0 = time.perf_counter()
    for i, cfg in enumerate(archs):
        m = measure_arch(cfg, backend=backend, store=store, **SETTINGS)
        out.append(m.median_ms)
        if not m.cached:
            print(f"  {backend} {i + 1}/{len(archs)} {cfg.hash} {m.median_ms:.2f} ms "
                  f"(CV {m.cv:.1%}, {time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def lut_predictions(archs: list[ArchConfig], store) -> list[float]:
    from edgeexplore.latency import measure_arch

    return [measure_arch(cfg, backend="lut", store=store, calibrate=3, **SETTINGS).median_ms
            for cfg in archs]


def flops_linear(train: list[int], feats: list, y: list[float]) -> list[float]:
    """Least squares latency = a + b·FLOPs on the training architectures."""
    import numpy as np

    flops = np.array([f.values["flops"] for f in feats])
    a = np.vstack([np.ones(len(train)), flops[train]]).T
    coef, *_ = np.linalg.lstsq(a, np.array(y)[train], rcond=None)
    return list(coef[0] + coef[1] * flops)


def line(name: str, s: dict[str, float]) -> str:
    return (f"  {name:28} within 10%: {s['within10']:5.0%}  within 5%: {s['within5']:5.0%}  "
            f"MAPE {s['mape']:5.1%}  tau {s['tau']:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", default="latency-predictor.db")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--measure-only", action="store_true")
    p.add_argument("--no-lut", action="store_true", help="skip the lut baseline (slow to build)")
    args = p.parse_args()

    import torch

    from edgeexplore.store import open_store

    torch.set_num_threads(1)
    store = open_store(args.storage)
    archs = sample_archs(N_ARCHS, args.seed, RESOLUTIONS)
    print(f"{N_ARCHS} architectures, resolutions {sorted({c.resolution for c in archs})}, "
          f"1 thread, thread-CPU clock")
    measured = {b: measure_all(archs, b, store) for b in BACKENDS}
    if args.measure_only:
        return
    lut = None if args.no_lut else lut_predictions(archs, store)

    from edgeexplore.latency.predictor import (
        arch_features,
        config_features,
        fit_predictor,
        select_diverse,
    )

    feats = [arch_features(cfg) for cfg in archs]
    cheap = [config_features(cfg) for cfg in archs]  # what `predictor fit` chooses by
    best = (-1.0, 0, "")
    for backend in BACKENDS:
        y = measured[backend]
        print(f"\n{backend}: measured {min(y):.1f}-{max(y):.1f} ms")
        if backend == "torch-cpu" and lut is not None:
            print(line("lut (3 calibrations), all", error_report(lut, y)))
        for n in TRAIN_SIZES:
            train = select_diverse(cheap, n)
            test = [i for i in range(len(archs)) if i not in set(train)]
            model = fit_predictor([feats[i] for i in train], [y[i] for i in train])
            pred = model.predict([feats[i] for i in test])
            truth = [y[i] for i in test]
            s = error_report(pred, truth)
            print(f" {n} measured, {len(test)} held out; chosen model: {model.method} "
                  f"(its own CV: within 10% {model.report['within10']:.0%}, "
                  f"MAPE {model.report['mape']:.1%})")
            print(line("learned predictor", s))
            fl = flops_linear(train, feats, [y[i] for i in range(len(archs))])
            print(line("FLOPs-only linear", error_report([fl[i] for i in test], truth)))
            if backend == "torch-cpu" and lut is not None:
                print(line("lut (3 calibrations)", error_report([lut[i] for i in test], truth)))
            if n <= 30 and s["within10"] > best[0]:
                best = (s["within10"], n, backend)
    print(f"within 10%: {best[0]:.0%} with {best[1]} measured ({best[2]})")


if __name__ == "__main__":
    main()
