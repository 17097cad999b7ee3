"""Training in full: an architecture from the search, trained with an authors' recipe.

timm provides the parts (transforms with RandAugment and random erasing, ``Mixup``,
``ModelEmaV3``, ``create_optimizer_v2``, ``create_scheduler_v2``, the soft-target and
label-smoothing losses); :class:`Trainer` binds them into the loop: AMP (bf16/fp16 on CUDA),
channels-last, gradient accumulation, DDP under ``torchrun``. :func:`train` adds the run around
it: data, a checkpoint every epoch (the best by validation kept beside it), logs, resume.

Resuming is bit-for-bit on CPU: the sampler's order depends only on (seed, epoch) and every
rank's RNG states (python, numpy, torch, CUDA) are saved with the weights, so the random crops,
RandAugment ops, mixup draws and drop-path masks after a resume are the ones an uninterrupted run
would have drawn. Loader workers are not persistent for the same reason: each epoch's workers
are seeded from the (restored) main RNG.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import ArchConfig
from ..errors import ConfigError, EdgeExploreError
from . import checkpoint as ckpt
from . import distributed, loaders
from .evaluate import run_eval
from .proxy import (
    autocast_dtype,
    cross_entropy,
    optimizer_step,
    progress_bar,
    seed_everything,
    use_channels_last,
)
from .recipe import TrainRecipe

Log = Callable[[str], None]


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def weights_digest(model: nn.Module) -> str:
    """A hash of every parameter and buffer: equal digests mean bit-identical weights."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class Trainer:
    """Model, optimizer, schedule, EMA, mixup, loss and AMP for one process; :meth:`train_epoch`
    is the whole loop body, so benchmarks time exactly what training runs."""

    def __init__(self, cfg: ArchConfig, recipe: TrainRecipe, d: distributed.Dist,
                 updates_per_epoch: int):
        from timm.data import Mixup
        from timm.loss import SoftTargetCrossEntropy
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2
        from timm.utils import ModelEmaV3

        from ..models import build

        self.cfg, self.recipe, self.d = cfg, recipe, d
        self.dtype = autocast_dtype(recipe.amp, recipe.amp_dtype, d.device)
        self.channels_last = use_channels_last(recipe.channels_last, d.device)
        model = build(cfg)
        self.synced_bn = d.enabled and d.device.type == "cuda" and _has_batchnorm(model)
        if self.synced_bn:
            # per-GPU batches are small; SyncBN is CUDA-only, so CPU (gloo) runs keep plain BN
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model.to(d.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.ema = ModelEmaV3(model, decay=recipe.ema_decay) if recipe.ema else None
        self.lr = recipe.scaled_lr(d.world_size)
        self.optimizer = create_optimizer_v2(model, opt=recipe.opt, lr=self.lr,
                                             weight_decay=recipe.weight_decay, eps=recipe.opt_eps)
        self.updates_per_epoch = updates_per_epoch
        self.scheduler, _ = create_scheduler_v2(
            self.optimizer, sched="cosine", num_epochs=recipe.epochs, min_lr=recipe.min_lr,
            warmup_lr=recipe.warmup_lr, warmup_epochs=recipe.warmup_epochs,
            step_on_epochs=False, updates_per_epoch=updates_per_epoch,
        )
        self.scaler = torch.amp.GradScaler(d.device.type) if self.dtype == torch.float16 else None
        self.mixup = Mixup(
            mixup_alpha=recipe.mixup, cutmix_alpha=recipe.cutmix, prob=recipe.mixup_prob,
            switch_prob=recipe.mixup_switch_prob, label_smoothing=recipe.label_smoothing,
            num_classes=cfg.num_classes,
        ) if recipe.mixes else None
        # mixup already smooths the targets it mixes
        self.criterion = (SoftTargetCrossEntropy() if self.mixup is not None
                          else cross_entropy(recipe.label_smoothing))
        self.net = model
        if d.enabled:
            self.net = nn.parallel.DistributedDataParallel(
                model, device_ids=[d.device.index] if d.device.type == "cuda" else None
            )
        self.updates = 0

    # ------------------------------------------------------------ the loop

    def train_epoch(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    advance: Callable[[], object] | None = None) -> dict[str, float]:
        """One pass over ``batches``; returns the mean loss, images and seconds. ``advance`` is
        called after every micro-batch (a progress bar).

        The loss is summed on the device and read once at the end (a per-step ``.item()`` is a
        host sync that stalls the GPU)."""
        self.net.train()
        accum, device = self.recipe.accum_steps, self.d.device
        loss_sum = torch.zeros((), device=device)
        images = micro = 0
        started = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        for x, y in batches:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if self.mixup is not None:
                x, y = self.mixup(x, y)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            micro += 1
            stepping = micro % accum == 0
            # DDP all-reduces gradients on every backward unless told to wait for the last
            # micro-batch of an accumulated step
            sync = contextlib.nullcontext() if stepping or not self.d.enabled else self.net.no_sync()
            with sync:
                with torch.autocast(device.type, dtype=self.dtype or torch.float32,
                                    enabled=self.dtype is not None):
                    loss = self.criterion(self.net(x), y)
                scaled = loss / accum
                (scaled if self.scaler is None else self.scaler.scale(scaled)).backward()
            loss_sum += loss.detach()
            images += len(x)
            if stepping:
                self._step()
            if advance is not None:
                advance()
            if micro >= self.updates_per_epoch * accum:
                break  # an incomplete accumulation at the end is dropped, as the schedule assumes
        mean_loss = (loss_sum / max(1, micro)).item()
        seconds = time.perf_counter() - started
        return {"loss": mean_loss, "images": images, "seconds": seconds,
                "images_per_second": images / seconds if seconds > 0 else 0.0}

    def sync_batchnorm_stats(self) -> None:
        """Average BatchNorm running statistics over the ranks (as timm's ``--dist-bn reduce``).

        DDP keeps parameters identical but each rank updates its running statistics from its
        own batches; without SyncBN (CPU runs) they drift apart, and the EMA copies them."""
        from timm.utils import distribute_bn

        if self.d.enabled and not self.synced_bn and _has_batchnorm(self.model):
            distribute_bn(self.model, self.d.world_size, reduce=True)
            if self.ema is not None:
                distribute_bn(self.ema.module, self.d.world_size, reduce=True)

    def _step(self) -> None:
        optimizer_step(self.optimizer, self.scaler, self.model.parameters(), self.recipe.grad_clip)
        self.optimizer.zero_grad(set_to_none=True)
        self.updates += 1
        self.scheduler.step_update(num_updates=self.updates)
        if self.ema is not None:
            self.ema.update(self.model, step=self.updates)

    # ------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "updates": self.updates,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.module.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.updates = state["updates"]


# ---------------------------------------------------------------- the run


@dataclass
class RunSetup:
    cfg: ArchConfig
    recipe: TrainRecipe
    data: str
    seed: int
    resumed: dict[str, Any] | None


def _prepare(arch: ArchConfig | None, data: str | None, output: Path, recipe: TrainRecipe | None,
             seed: int, resume: bool, world_size: int) -> RunSetup:
    """What to train: the arguments for a new run, or the checkpoint's own for ``resume``."""
    last = output / ckpt.LAST
    if not resume:
        if last.exists():
            raise EdgeExploreError(f"{output} already holds a run ({ckpt.LAST}); pass --resume "
                                   "to continue it or choose another --output")
        if arch is None or data is None or recipe is None:
            raise ConfigError("a new run needs an architecture, --data and a recipe")
        return RunSetup(arch, recipe, data, seed, None)
    if not last.is_file():
        raise EdgeExploreError(f"nothing to resume: {last} does not exist")
    state = ckpt.load(last)
    if not ckpt.is_training_checkpoint(state):
        raise EdgeExploreError(f"{last} is not a checkpoint written by edgeexplore train")
    saved_recipe = TrainRecipe.from_dict(state["recipe"])
    if state["epoch"] >= saved_recipe.epochs:
        n = saved_recipe.epochs
        raise EdgeExploreError(f"the run in {output} already finished its {n} "
                               f"epoch{'s' if n != 1 else ''}; there is nothing to resume")
    if state["world_size"] != world_size:
        # the global batch sets the learning rate and the data each rank saw
        raise EdgeExploreError(f"the run in {output} was trained by {state['world_size']} "
                               f"process(es); resume it with the same number, not {world_size}")
    return RunSetup(ArchConfig.from_dict(state["arch"]), saved_recipe, state["data"],
                    state["seed"], state)


def _sampler_digest(sampler: Any, images: int) -> str:
    """A hash of the set of image indices a rank draws this epoch (sorted: order aside)."""
    seen = np.sort(np.array(list(iter(sampler))[:images], dtype=np.int64))
    return hashlib.sha256(seen.tobytes()).hexdigest()[:16]


def _fmt(m: dict[str, Any], k: int) -> str:
    return f"top-1 {m['top1']:.2f} top-{k} {m[f'top{k}']:.2f}"


def train(
    arch: ArchConfig | None,
    data: str | None,
    output: Path,
    recipe: TrainRecipe | None = None,
    *,
    seed: int = 0,
    resume: bool = False,
    stop_after: int | None = None,
    device: str | None = None,
    log: Log = print,
    on_epoch: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """Train ``arch`` on ``data`` into ``output`` (or continue the run there, ``resume``).

    ``stop_after`` ends this invocation after that epoch (a later ``resume`` continues it), for
    schedulers with time limits. Returns the run's summary (also written to
    ``output/results.json``). Under torchrun every rank calls this; rank 0 writes and logs,
    and calls ``on_epoch`` with each epoch's log record (the store follows the run with it).
    """
    d = distributed.setup(device)
    try:
        return _run(arch, data, Path(output), recipe, seed, resume, stop_after, d, log, on_epoch)
    finally:
        distributed.teardown(d)


def _run(arch: ArchConfig | None, data: str | None, output: Path, recipe: TrainRecipe | None,
         seed: int, resume: bool, stop_after: int | None, d: distributed.Dist,
         log: Log, on_epoch: Callable[[dict[str, Any]], object] | None) -> dict[str, Any]:
    setup = _prepare(arch, data, output, recipe, seed, resume, d.world_size)
    recipe, seed = setup.recipe, setup.seed
    splits = loaders.open_splits(setup.data, seed)
    cfg = setup.cfg  # on resume, exactly what was trained
    if setup.resumed is None:  # the data decide the classes; the recipe the input and drop path
        cfg = cfg.replace(num_classes=splits.num_classes,
                          resolution=tuple(recipe.resolution or cfg.resolution),
                          drop_path_rate=recipe.drop_path)

    workers = loaders.workers_for(recipe.workers, d.local_world_size)
    pin = d.device.type == "cuda"
    train_set = splits.dataset("train", loaders.train_transform(recipe, cfg.resolution))
    val_set = splits.dataset("val", loaders.eval_transform(cfg.resolution, recipe.crop_pct,
                                                           recipe.interpolation))
    train_loader, sampler = loaders.train_loader(train_set, recipe.batch_size, d.rank,
                                                 d.world_size, seed, workers, pin)
    val_loader = loaders.eval_loader(val_set, recipe.batch_size, d.rank, d.world_size, workers,
                                     pin)
    updates_per_epoch = len(train_loader) // recipe.accum_steps
    if updates_per_epoch < 1:
        raise ConfigError(f"one optimizer step needs {recipe.accum_steps} batches of "
                          f"{recipe.batch_size} per process; the data give {len(train_loader)}")

    seed_everything(seed)  # identical initial weights on every rank (DDP also broadcasts them)
    trainer = Trainer(cfg, recipe, d, updates_per_epoch)
    seed_everything(seed + d.rank)  # different augmentations per rank
    first_epoch, best = 1, {"top1": -1.0, "epoch": 0}
    if setup.resumed is not None:
        trainer.load_state(setup.resumed)
        ckpt.set_rng_state(setup.resumed["rng"][d.rank])
        first_epoch, best = setup.resumed["epoch"] + 1, setup.resumed["best"]

    k = min(5, cfg.num_classes)
    if d.is_main:
        output.mkdir(parents=True, exist_ok=True)
        (output / "arch.json").write_text(cfg.to_json(indent=1) + "\n")
        (output / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=1) + "\n")
        what = "resuming" if setup.resumed is not None else "training"
        log(f"{what} {cfg.hash} ({cfg.describe()}) on {setup.data}: {len(train_set)} train / "
            f"{len(val_set)} val images, {cfg.num_classes} classes, {d.world_size} process(es) "
            f"on {d.device.type}, global batch {recipe.batch_size * d.world_size * recipe.accum_steps}"
            f", lr {trainer.lr:.3g}")

    epoch, final = first_epoch - 1, (setup.resumed or {}).get("metrics") or {}
    bar = progress_bar(enabled=d.is_main)
    task = bar.add_task("", total=updates_per_epoch * recipe.accum_steps)
    with bar:
        for epoch in range(first_epoch, recipe.epochs + 1):
            bar.update(task, completed=0, description=f"epoch {epoch}/{recipe.epochs}")
            sampler.set_epoch(epoch)
            seen = len(train_loader) * recipe.batch_size
            rank_data = distributed.gather(d, {"rank": d.rank, "images": seen,
                                               "digest": _sampler_digest(sampler, seen)})
            stats = trainer.train_epoch(train_loader, lambda: bar.advance(task))
            trainer.sync_batchnorm_stats()
            if not math.isfinite(stats["loss"]):
                raise EdgeExploreError(
                    f"training diverged: the loss became NaN or infinite in epoch {epoch}; "
                    f"{output / ckpt.LAST} holds epoch {epoch - 1} (lower --lr or set grad_clip)"
                )
            val = run_eval(trainer.model, val_loader, d, cfg.num_classes, trainer.dtype,
                           trainer.channels_last)
            ema_val = (run_eval(trainer.ema.module, val_loader, d, cfg.num_classes, trainer.dtype,
                                trainer.channels_last) if trainer.ema is not None else None)
            score = (ema_val or val)["top1"]
            improved = score > best["top1"]
            if improved:
                best = {"top1": score, f"top{k}": (ema_val or val)[f"top{k}"], "epoch": epoch}
            rngs = distributed.gather(d, ckpt.rng_state())
            record = {
                "epoch": epoch, "train_loss": round(stats["loss"], 6),
                "lr": trainer.optimizer.param_groups[0]["lr"], "updates": trainer.updates,
                "train_images_per_second": round(stats["images_per_second"] * d.world_size, 2),
                "train_seconds": round(stats["seconds"], 3), "val": val, "val_ema": ema_val,
                "data": rank_data,
            }
            if d.is_main:
                state = {
                    "format": ckpt.FORMAT, "arch": cfg.to_dict(), "recipe": recipe.to_dict(),
                    "data": setup.data, "seed": seed, "epoch": epoch, "world_size": d.world_size,
                    "best": best, "metrics": record, "rng": rngs, **trainer.state(),
                }
                ckpt.save(state, output / ckpt.LAST)
                if improved:
                    ckpt.save(state, output / ckpt.BEST)
                with open(output / "log.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                ema_text = f" · ema {_fmt(ema_val, k)}" if ema_val else ""
                log(f"epoch {epoch}/{recipe.epochs} · loss {stats['loss']:.4f} · val {_fmt(val, k)}"
                    f"{ema_text} · {record['train_images_per_second']:.0f} img/s"
                    f"{' · best' if improved else ''}")
                if on_epoch is not None:
                    on_epoch(record)
            final = record
            distributed.barrier(d)
            if stop_after is not None and epoch >= stop_after:
                break

    digests = distributed.gather(d, weights_digest(trainer.model))
    summary = {
        "output": str(output), "arch": cfg.hash, "epochs_done": epoch,
        "epochs": recipe.epochs, "finished": epoch >= recipe.epochs, "best": best,
        # the weights the summary reports on: EMA when the recipe keeps one, as for best
        "final": final.get("val_ema") or final.get("val"), "top_k": k,
        "world_size": d.world_size, "weights_digest": digests,
    }
    if d.is_main:
        (output / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
