"""Full-training throughput as a ratio to a bare forward/backward/step loop.

Three loops on the same model, batch size, optimizer, AMP and memory format:

* bare: one fixed, already-transformed batch; forward, cross-entropy, backward, AdamW step;
* train, loading excluded: :meth:`Trainer.train_epoch` (mixup/cutmix, soft-target loss, the
  scheduler, EMA, loss bookkeeping) over batches transformed beforehand and held in memory;
* train, loading included: the same over the real DataLoader (decode to PIL, RandomResizedCrop,
  RandAugment, random erasing in worker processes).

The first ratio is what the loop costs, the second what the data pipeline costs on top. Runs
alternate and medians are printed, since this machine is shared.

    uv run python benchmarks/train_throughput.py [--arch edgevit_xxs] [--resolution 64]
        [--batch 32] [--steps 10] [--repeats 3] [--workers 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from edgeexplore.config import get_preset
from edgeexplore.training import distributed, loaders
from edgeexplore.training.full import Trainer
from edgeexplore.training.proxy import seed_everything
from edgeexplore.training.recipe import load_recipe


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(trainer: Trainer, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    """Images/s of forward/backward/step on one batch with the trainer's model and optimizer."""
    model, opt, device = trainer.model, trainer.optimizer, trainer.d.device
    x, y = x.to(device), y.to(device)
    if trainer.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    for i in range(steps + 2):  # two warm-up steps
        if i == 2:
            _sync(device)
            started = time.perf_counter()
        with torch.autocast(device.type, dtype=trainer.dtype or torch.float32,
                            enabled=trainer.dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return steps * len(y) / (time.perf_counter() - started)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="edgevit_xxs")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--recipe", default="edgevit")
    p.add_argument("--device", default=None)
    args = p.parse_args()

    n = args.batch * args.steps
    splits = loaders.open_splits(f"synthetic:classes=10,train={n},val=10")
    res = (args.resolution, args.resolution)
    recipe = load_recipe(args.recipe).replace(batch_size=args.batch, workers=args.workers,
                                              epochs=10, warmup_epochs=1, accum_steps=1)
    d = distributed.setup(args.device)
    loader, sampler = loaders.train_loader(
        splits.dataset("train", loaders.train_transform(recipe, res)), args.batch, 0, 1, 0,
        args.workers, d.device.type == "cuda")
    in_memory = list(loader)  # transformed once: the loop alone is timed over these
    seed_everything(0)
    cfg = get_preset(args.arch).replace(resolution=res, num_classes=splits.num_classes,
                                        drop_path_rate=recipe.drop_path)
    trainer = Trainer(cfg, recipe, d, updates_per_epoch=args.steps)
    trainer.train_epoch(in_memory[:2])  # allocator, kernel selection

    bare, excluded, included = [], [], []
    for epoch in range(args.repeats):
        bare.append(bare_loop(trainer, *in_memory[0], args.steps))
        _sync(d.device)
        excluded.append(trainer.train_epoch(in_memory)["images_per_second"])
        sampler.set_epoch(epoch)
        included.append(trainer.train_epoch(loader)["images_per_second"])
    b, e, i = (statistics.median(v) for v in (bare, excluded, included))
    print(f"{args.arch} at {args.resolution}x{args.resolution}, batch {args.batch}, "
          f"{args.steps} steps, recipe {args.recipe}, {d.device}, "
          f"{torch.get_num_threads()} threads, {args.workers} loader workers")
    print(f"  bare forward/backward/step      {b:9.1f} images/s")
    print(f"  train loop, loading excluded    {e:9.1f} images/s  ratio {e / b:.3f}")
    print(f"  train loop, loading included    {i:9.1f} images/s  ratio {i / b:.3f}")


if __name__ == "__main__":
    main()
