"""Proxy-training throughput as a ratio to a bare forward/backward/step loop.

The bare loop (``edgeexplore.training.proxy.bare_loop_throughput``) trains the same model on one fixed,
already-normalised batch with the same optimizer, loss, AMP and memory format: no data order, no
augmentation, no scheduler, no loss bookkeeping, no progress bar. ``train_proxy`` does all of
those; the ratio of its images/second to the bare loop's is what the lean loop costs (target
>= 0.9). Runs alternate and the median ratio is reported, since this machine is shared.

    uv run python benchmarks/proxy_throughput.py [--arch edgevit_xxs] [--resolution 32]
        [--batch 64] [--steps 30] [--repeats 3] [--device cpu|cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from edgeexplore.config import get_preset
from edgeexplore.data import load_data
from edgeexplore.models import build
from edgeexplore.training.proxy import (
    ProxyRecipe,
    bare_loop_throughput,
    seed_everything,
    train_proxy,
)


def measure(arch: str, resolution: int, batch: int, steps: int, repeats: int, device: str | None):
    data = load_data(
        "synthetic:classes=10",
        subset=batch * (steps + 1) // 10 + 1,
        val_subset=2,
        resolution=resolution,
    )
    cfg = get_preset(arch).replace(
        resolution=(resolution, resolution), num_classes=data.num_classes
    )
    recipe = ProxyRecipe(epochs=1, batch_size=batch, max_train_batches=steps, warmup_epochs=0)

    def model():
        seed_everything(0)
        return build(cfg)

    # one short run of each first: allocator, oneDNN/cuDNN kernel selection
    bare_loop_throughput(model(), data, recipe, steps=3, device=device)
    train_proxy(
        model(),
        data,
        ProxyRecipe(**{**recipe.to_dict(), "max_train_batches": 3}),
        device=device,
        progress=False,
    )
    rows = []
    for _ in range(repeats):
        bare = bare_loop_throughput(model(), data, recipe, steps=steps, device=device)
        proxy = train_proxy(model(), data, recipe, device=device, progress=False)
        rows.append((bare, proxy.images_per_second, proxy.images_per_second / bare))
        print(
            f"  bare {bare:8.1f} img/s   proxy {proxy.images_per_second:8.1f} img/s   "
            f"ratio {rows[-1][2]:.3f}",
            flush=True,
        )
    return rows, proxy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="edgevit_xxs")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{args.arch} at {args.resolution}x{args.resolution}, batch {args.batch}, "
        f"{args.steps} steps, {args.threads} thread(s)"
    )
    rows, last = measure(
        args.arch, args.resolution, args.batch, args.steps, args.repeats, args.device
    )
    ratio = statistics.median(r[2] for r in rows)
    print(f"device {last.device}, amp {last.amp}, channels_last {last.channels_last}")
    print(f"proxy / bare throughput: {ratio:.3f} (median of {len(rows)}; target >= 0.9)")


if __name__ == "__main__":
    main()
