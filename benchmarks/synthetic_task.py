"""Is the built-in synthetic task learnable by tiny EdgeViTs, and does it need global context?

Trains, with the same proxy recipe on the same synthetic data: a "local only" CNN (receptive
field 7 px, then global average pooling: a bag of local features), a "global" CNN of the same
width whose pooled features have seen the whole object (strided convs, receptive field > 64 px),
and a few architectures sampled from a search space (default edgevit-tiny, seeded random
sampling). Prints the validation accuracy after each epoch and the training time.

    uv run python benchmarks/synthetic_task.py [--spec synthetic:classes=10] [--resolution 64]
        [--subset 400] [--val-subset 50] [--epochs 8] [--batch 32] [--lr 3e-3] [--archs 3]
        [--space edgevit-tiny] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import optuna
import torch
from torch import nn

from edgeexplore.data import load_data
from edgeexplore.models import build
from edgeexplore.search.space import resolve_space
from edgeexplore.training.proxy import ProxyRecipe, seed_everything, train_proxy


def local_only(num_classes: int, width: int = 32) -> nn.Module:
    """A stride-2 3x3 conv, a 3x3 conv, a 1x1 conv (receptive field 7 px), global pooling."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes),
    )  # fmt: skip


def global_cnn(num_classes: int, width: int = 32) -> nn.Module:
    """Five stride-2 3x3 convs (receptive field 63 px at the last layer) then global pooling."""
    layers: list[nn.Module] = []
    cin = 3
    for _ in range(5):
        layers += [nn.Conv2d(cin, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        cin = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="synthetic:classes=10")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--subset", type=int, default=400)
    ap.add_argument("--val-subset", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--archs", type=int, default=3, help="architectures sampled from the space")
    ap.add_argument("--space", default="edgevit-tiny")
    ap.add_argument("--only", default="", help="comma list: local,global,space (default all)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    data = load_data(args.spec, resolution=args.resolution, subset=args.subset,
                     val_subset=args.val_subset, seed=0)  # fmt: skip
    print(f"data: {len(data.train)} train / {len(data.val)} val at {data.resolution}, "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    recipe = ProxyRecipe(epochs=args.epochs, batch_size=args.batch, lr=args.lr,
                         warmup_epochs=args.warmup, label_smoothing=0.1)  # fmt: skip
    only = set(args.only.split(",")) if args.only else {"local", "global", "space"}

    models: list[tuple[str, object]] = []
    if "local" in only:
        models.append(("local only (RF 7 px + GAP)", lambda: local_only(data.num_classes)))
    if "global" in only:
        models.append(("global CNN (5 strided convs + GAP)", lambda: global_cnn(data.num_classes)))
    if "space" in only:
        space = resolve_space(args.space)
        sampler = optuna.samplers.RandomSampler(seed=0)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(sampler=sampler)
        for _ in range(args.archs):
            cfg = space.suggest(study.ask(), num_classes=data.num_classes,
                                resolution=args.resolution)  # fmt: skip
            models.append((cfg.describe(), lambda cfg=cfg: build(recipe.arch_for(cfg))))

    for name, make in models:
        seed_everything(0)
        model = make()
        params = sum(p.numel() for p in model.parameters())
        result = train_proxy(model, data, recipe, seed=0, progress=False)
        accs = ", ".join(f"{c['val_acc']:.2f}" for c in result.curve)
        print(f"{name} | {params / 1e3:.0f} k params | val acc {accs} | "
              f"{result.train_seconds + result.eval_seconds:.1f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
