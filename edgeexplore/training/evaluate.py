"""Validation metrics (top-1, top-5, loss, images/s) and ``evaluate CHECKPOINT``.

:func:`run_eval` is shared by the training loop and the command; under ``torchrun`` each rank
evaluates its own shard and the counts are summed, so the numbers equal a one-process run.

Checkpoints :func:`load_for_eval` understands:

* a training checkpoint (``edgeexplore train``): the EMA weights when it has them;
* a state dict written by ``edgeexplore convert`` with its ArchConfig JSON beside it;
* a timm (or the authors') EdgeNeXt state dict, whose architecture is read off the weights;
* any state dict of our models, with ``--arch PRESET|CONFIG.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ArchConfig, parse_resolution, resolve_arch
from ..errors import ConfigError, EdgeExploreError
from . import checkpoint as ckpt
from . import distributed, loaders
from .proxy import autocast_dtype


@torch.inference_mode()
def run_eval(model: nn.Module, loader: Any, d: distributed.Dist, num_classes: int,
             dtype: torch.dtype | None = None, channels_last: bool = False) -> dict[str, float]:
    """Top-1/top-5 accuracy (%), mean cross-entropy and images/s over ``loader`` (all ranks)."""
    was_training = model.training
    model.eval()
    k = min(5, num_classes)
    # correct@1, correct@k, summed loss, images: one all-reduce at the end
    totals = torch.zeros(4, dtype=torch.float64, device=d.device)
    started = time.perf_counter()
    for x, y in loader:
        x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(d.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x)
        logits = logits.float()
        top = logits.topk(k, dim=1).indices
        hits = top == y[:, None]
        totals[0] += hits[:, 0].sum()
        totals[1] += hits.any(dim=1).sum()
        totals[2] += nn.functional.cross_entropy(logits, y, reduction="sum")
        totals[3] += len(y)
    seconds = time.perf_counter() - started
    distributed.all_sum(d, totals)
    model.train(was_training)
    n = max(1.0, totals[3].item())
    return {
        "top1": round(100 * totals[0].item() / n, 4),
        f"top{k}": round(100 * totals[1].item() / n, 4),
        "loss": round(totals[2].item() / n, 6),
        "images": int(totals[3].item()),
        "seconds": round(seconds, 3),
        "images_per_second": round(totals[3].item() / seconds, 2) if seconds > 0 else 0.0,
    }


@dataclass
class Loaded:
    model: nn.Module
    arch: ArchConfig
    weights: str  # "ema" | "model" | "converted" | "timm-edgenext" | "state dict"
    resolution: tuple[int, int]
    crop_pct: float
    interpolation: str


def _state_dict_of(obj: dict[str, Any]) -> dict[str, torch.Tensor]:
    for key in ("model", "state_dict", "model_ema", "state_dict_ema"):
        if isinstance(obj.get(key), dict):
            return obj[key]
    return obj


def _fits(cfg: ArchConfig, given: ArchConfig) -> bool:
    """Same network apart from what training sets: the class count (the data), the resolution
    and the drop-path rate (the recipe)."""
    def core(c: ArchConfig) -> str:
        return c.replace(num_classes=1, resolution=(224, 224), drop_path_rate=0.0).hash

    return core(cfg) == core(given)


def load_for_eval(path: Path, arch: str | None = None, use_ema: bool = True) -> Loaded:
    """Build the model a checkpoint holds and load its weights (see the module docstring)."""
    from ..models import build, from_timm_edgenext
    from ..models.official_blocks import load_converted

    obj = ckpt.load(path)
    wanted = resolve_arch(arch) if arch is not None else None
    if ckpt.is_training_checkpoint(obj):
        cfg = ArchConfig.from_dict(obj["arch"])
        if wanted is not None and not _fits(cfg, wanted):
            raise ConfigError(f"{path} holds weights of architecture {cfg.hash} "
                              f"({cfg.describe()}), not of --arch {arch}")
        recipe = obj["recipe"]
        ema = use_ema and obj.get("ema") is not None
        model = build(cfg)
        model.load_state_dict(obj["ema"] if ema else obj["model"])
        return Loaded(model.eval(), cfg, "ema" if ema else "model", tuple(cfg.resolution),
                      recipe["crop_pct"], recipe["interpolation"])
    state = _state_dict_of(obj)
    beside = path.with_suffix(".json")
    if wanted is None and beside.is_file():  # written by `edgeexplore convert`
        wanted, kind = ArchConfig.load(beside), "converted"
    else:
        kind = "state dict"
    if wanted is None:
        try:
            model = from_timm_edgenext(state)
        except (ConfigError, KeyError, ValueError, IndexError):
            raise ConfigError(
                f"cannot tell which architecture {path} holds; give --arch PRESET|CONFIG.json"
            ) from None
        return Loaded(model, model.arch, "timm-edgenext", tuple(model.arch.resolution), 0.875,
                      "bicubic")
    head = state.get("head.weight")
    if head is not None and head.ndim >= 1:
        wanted = wanted.replace(num_classes=int(head.shape[0]))
    try:
        model = load_converted(build(wanted), state, str(path))
    except ConfigError:
        if wanted.macro != "edgenext":
            raise
        model = from_timm_edgenext(state, wanted)  # timm's key names
        kind = "timm-edgenext"
    return Loaded(model.eval(), model.arch, kind, tuple(wanted.resolution), 0.875, "bicubic")


def evaluate_checkpoint(
    path: Path,
    data: str,
    arch: str | None = None,
    batch_size: int = 256,
    resolution: Any = None,
    crop_pct: float | None = None,
    use_ema: bool = True,
    workers: int = 8,
    device: str | None = None,
    amp: bool | str = "auto",
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate a checkpoint on ``data``'s validation split; returns the metrics and what was
    loaded. Runs under torchrun too (each rank a shard)."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, not {batch_size}")
    d = distributed.setup(device)
    try:
        loaded = load_for_eval(path, arch, use_ema)
        splits = loaders.open_splits(data, seed)
        classes = loaded.arch.num_classes
        if classes != splits.num_classes:
            raise EdgeExploreError(f"{path} has {classes} outputs but {data} has "
                                   f"{splits.num_classes} classes")
        res = parse_resolution(resolution) if resolution is not None else loaded.resolution
        pct = crop_pct if crop_pct is not None else loaded.crop_pct
        if not 0 < pct <= 1:
            raise ConfigError(f"--crop-pct must be in (0, 1], not {pct}")
        dataset = splits.dataset("val", loaders.eval_transform(res, pct, loaded.interpolation))
        loader = loaders.eval_loader(dataset, batch_size, d.rank, d.world_size,
                                     loaders.workers_for(workers, d.local_world_size),
                                     d.device.type == "cuda")
        model = loaded.model.to(d.device)
        dtype = autocast_dtype(amp, "auto", d.device)
        metrics = run_eval(model, loader, d, classes, dtype, d.device.type == "cuda")
    finally:
        distributed.teardown(d)
    return {
        **metrics,
        "checkpoint": str(path),
        "weights": loaded.weights,
        "arch": loaded.arch.hash,
        "resolution": list(res),
        "crop_pct": pct,
        "device": str(d.device),
        "processes": d.world_size,
        "rank": d.rank,
    }
