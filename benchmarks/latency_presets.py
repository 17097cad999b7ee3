"""Median CPU latency of our presets against timm's siblings and a naive port of the authors' code.

    uv run python benchmarks/latency_presets.py [--threads 2] [--reps 40] [--size 224] [--clock cpu]

Batch 1, ``--threads`` intra-op threads, eval mode under ``torch.inference_mode``. Every model
is warmed up, then the models are timed in interleaved rounds (one call each per round), so a
burst of load from other processes hits all of them alike instead of whichever ran then.
Each model is printed with its median and its ratio to our edgevit_xxs; each naive port is
also compared with our model of the same size.

``--clock cpu`` times with the calling thread's CPU clock instead of the wall clock: on a
machine shared with other jobs, wall-clock medians mostly measure the scheduler, while CPU time
still compares the models' work (use it with ``--threads 1``, where one thread does all of it).

To add a model, append an :class:`Entry` to :func:`entries` (a name, a zero-argument factory
and an input size).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import timm
from official_port import naive_edgevit

import edgeexplore  # noqa: F401  (registers our presets with timm)
from edgeexplore.config import get_preset
from edgeexplore.models import build

REFERENCE = "edgevit_xxs"


@dataclass
class Entry:
    name: str
    factory: Callable[[], nn.Module]
    size: int
    #: name of the entry this one is compared with (besides the reference), if any
    versus: str | None = None


def entries(size: int | None) -> list[Entry]:
    """The models to time; ``size`` overrides every model's native input size."""
    def s(native: int) -> int:
        return size or native

    out = [Entry(n, (lambda n=n: build(get_preset(n))), s(224))
           for n in ("edgevit_xxs", "edgevit_xs", "edgevit_s")]
    # sibling presets (EdgeNeXt at its native 256, next to timm's) and the EdgeViT-XS hybrids
    out += [Entry(n, (lambda n=n: build(get_preset(n))), s(get_preset(n).resolution[0]))
            for n in ("edgenext_xx_small", "edgenext_x_small", "edgenext_small",
                      "edgevit_xs_gcc", "edgevit_xs_sdta")]
    out += [
        Entry("timm:edgenext_xx_small", lambda: timm.create_model("edgenext_xx_small"), s(256)),
        Entry("timm:mobilevit_xxs", lambda: timm.create_model("mobilevit_xxs"), s(256)),
    ]
    # the authors' code only runs at its img_size
    out += [Entry(f"naive:{n}", (lambda n=n: naive_edgevit(n, img_size=s(224))), s(224), n)
            for n in ("edgevit_xxs", "edgevit_xs", "edgevit_s")]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall-clock latency, or the calling thread's CPU time")
    ap.add_argument("--size", type=int, default=None, help="one input size for every model")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    torch.manual_seed(0)

    models, inputs = {}, {}
    for e in entries(args.size):
        models[e.name] = e.factory().eval()
        inputs[e.name] = torch.randn(1, 3, e.size, e.size)
    samples: dict[str, list[float]] = {n: [] for n in models}
    with torch.inference_mode():
        for name, m in models.items():
            for _ in range(args.warmup):
                m(inputs[name])
        for rep in range(args.reps):
            for name, m in models.items():
                t0 = clock()
                m(inputs[name])
                samples[name].append((clock() - t0) * 1e3)
            print(f"\rround {rep + 1}/{args.reps}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    med = {n: statistics.median(v) for n, v in samples.items()}
    by_name = {e.name: e for e in entries(args.size)}
    print(f"torch {torch.__version__}, timm {timm.__version__}, {args.threads} threads, batch 1, "
          f"{args.reps} interleaved reps after {args.warmup} warm-up, {args.clock} clock")
    print(f"{'model':26s} {'input':>7s} {'params':>11s} {'median ms':>10s} {'IQR ms':>8s} "
          f"{'vs ' + REFERENCE:>15s}")
    for name, times in samples.items():
        q = statistics.quantiles(times, n=4)
        params = sum(p.numel() for p in models[name].parameters())
        size = by_name[name].size
        print(f"{name:26s} {size:>7d} {params:>11,d} {med[name]:>10.2f} {q[2] - q[0]:>8.2f} "
              f"{med[name] / med[REFERENCE]:>14.2f}x")
    print()
    for e in by_name.values():
        if e.versus:
            ratio = med[e.name] / med[e.versus]
            print(f"ours {e.versus} vs {e.name}: {med[e.versus]:.2f} ms vs {med[e.name]:.2f} ms "
                  f"-> the naive port takes {ratio:.2f}x our time")


if __name__ == "__main__":
    main()
