"""``edgeexplore train`` and ``edgeexplore evaluate``: training a found architecture in full.

Thin wrappers over :mod:`edgeexplore.training.full` and :mod:`edgeexplore.training.evaluate`.
Both run unchanged under ``torchrun --nproc_per_node=N -m edgeexplore ...``.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import ConfigError, EdgeExploreError
from .options import SEED, format_option, json_alias, storage_option
from .output import Column, emit


def _trial_arch(spec: str, storage: str | None):
    """The ArchConfig of trial ``STUDY/NUMBER`` (Optuna's per-study number) in the store."""
    from sqlalchemy import select

    from ..analysis.query import open_store
    from ..config import ArchConfig
    from ..store.schema import Architecture, TrialResult

    study, _, number = spec.removeprefix("trial:").rpartition("/")
    if not study or not number.isdigit():
        raise ConfigError(f"{spec!r} must be trial:STUDY/NUMBER, e.g. trial:cifar/12")
    with open_store(storage).connect() as conn:
        config = conn.scalar(
            select(Architecture.config)
            .join(TrialResult, TrialResult.arch_hash == Architecture.hash)
            .where(TrialResult.study == study, TrialResult.number == int(number))
        )
    if config is None:
        raise EdgeExploreError(f"no trial number {number} with an architecture in study {study!r}")
    return ArchConfig.from_json(config)


def resolve_train_arch(spec: str, storage: str | None):
    """A preset, an ArchConfig JSON file, or trial:STUDY/NUMBER from the store."""
    from ..config import resolve_arch

    if spec.startswith("trial:"):
        return _trial_arch(spec, storage)
    return resolve_arch(spec)


@click.command("train")
@click.argument("arch", required=False, metavar="PRESET|CONFIG.json|trial:STUDY/N")
@click.option("--data", metavar="SPEC",
              help="synthetic, cifar10[:PATH] or folder:PATH (train/ and val/ of class folders).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for checkpoints (last.pt, best.pt) and logs (log.jsonl, results.json).")
@click.option("--recipe", "recipe_name", default="edgevit", show_default=True,
              metavar="edgevit|edgenext|FILE.yaml", help="The training recipe.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the recipe.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Images per process per micro-batch (overrides the recipe).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Learning rate at the recipe's lr_base_batch (scaled by the global batch).")
@click.option("--warmup-epochs", type=click.FloatRange(min=0), default=None,
              help="Override the recipe (must stay below the epochs).")
@click.option("--resolution", default=None, metavar="N|HxW", help="Training resolution.")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Data-loading workers per process (overrides the recipe).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--resume", is_flag=True,
              help="Continue the run in --output from its last checkpoint (its own settings).")
@click.option("--stop-after", type=click.IntRange(min=1), default=None, metavar="EPOCH",
              help="Stop after this epoch; --resume continues later (for time-limited jobs).")
@click.option("--device", default=None, help="cpu or cuda (default: cuda when available).")
@click.option("--force", is_flag=True,
              help="Train even when the store holds a complete training of this architecture "
                   "with the same recipe, data and seed.")
@storage_option("Where trial:STUDY/N is read and, when given (or $EDGEEXPLORE_STORAGE is set), "
                "where the run is recorded (table trainings)")
def train_cmd(arch, data, output, recipe_name, epochs, batch_size, lr, warmup_epochs, resolution,
              workers, seed,
              resume, stop_after, device, force, storage) -> None:
    """Train an architecture in full with the authors' recipe (EdgeViT's DeiT recipe or
    EdgeNeXt's), on one GPU, a CPU, or many GPUs and nodes under torchrun.

    \b
    Examples:
      edgeexplore train edgevit_xxs --data folder:/data/imagenet -o runs/xxs
      torchrun --standalone --nproc_per_node=8 -m edgeexplore train arch.json \\
          --data folder:/data/imagenet --recipe edgenext -o runs/found
      edgeexplore train --resume -o runs/xxs
      edgeexplore train trial:cifar10/12 --data cifar10 -o runs/t12 --storage cifar.db
    """
    from ..training.recipe import load_recipe

    if device is not None:  # "tpu" is refused now, not after the run folder is written
        from ..training.proxy import resolve_device

        resolve_device(device)
    overrides = {"epochs": epochs, "batch_size": batch_size, "lr": lr,
                 "warmup_epochs": warmup_epochs, "resolution": resolution, "workers": workers}
    if resume:
        given = [f"--{k.replace('_', '-')}" for k, v in overrides.items() if v is not None]
        given += (["ARCH"] if arch else []) + (["--data"] if data else [])
        if given:
            raise ConfigError("--resume continues the run with its recorded architecture, data "
                              f"and recipe; drop {', '.join(given)}")
        _run(None, None, output, None, 0, True, stop_after, device, False, storage)
        return
    if arch is None:
        raise ConfigError("give the architecture to train (a preset, a CONFIG.json or "
                          "trial:STUDY/N), or --resume")
    if data is None:
        raise ConfigError("give --data (synthetic, cifar10 or folder:PATH)")
    recipe = load_recipe(recipe_name)
    try:
        recipe = recipe.replace(**overrides)
    except ConfigError as e:
        raise ConfigError(str(e).replace("recipe: ", "", 1)) from None
    cfg = resolve_train_arch(arch, storage)
    _run(cfg, data, output, recipe, seed, False, stop_after, device, force, storage)


def _recording(storage: str | None) -> bool:
    """A run is recorded only where a store was named: a plain run stays a plain folder."""
    return storage is not None or "EDGEEXPLORE_STORAGE" in os.environ


def _run(cfg, data, output: Path, recipe, seed: int, resume: bool, stop_after, device,
         force: bool, storage: str | None) -> None:
    from ..evaluation import FullRun, TrainingSpec
    from ..evaluation.trainings import as_trained, recorded_run, train_full
    from ..training.full import train

    folder = str(output.resolve())
    recorded = recorded_run(folder, storage) if resume and _recording(storage) else None
    if not _recording(storage) or (resume and recorded is None):
        train(cfg, data, output, recipe, seed=seed, resume=resume, stop_after=stop_after,
              device=device, log=click.echo)
        return
    if recorded is not None:
        cfg, spec = recorded
    else:
        spec = TrainingSpec.full(recipe, data, seed)
        cfg = as_trained(cfg, spec)
    out = train_full(cfg, spec, FullRun(folder, resume, stop_after, device, click.echo),
                     storage, force)
    if out.prior is not None:
        m = out.prior.metrics
        click.echo(f"reused training {out.prior.id} of {cfg.hash} with the same recipe, data and "
                   f"seed: best top-1 {100 * out.accuracy:.2f} in {m.get('output')} (--force "
                   "trains again)")


@click.command("evaluate")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", metavar="SPEC", required=True,
              help="Evaluated on its validation split (val/ or test/ of a folder).")
@click.option("--arch", default=None, metavar="PRESET|CONFIG.json",
              help="The architecture of a plain state dict (training checkpoints, converted ones "
                   "with their .json, and timm EdgeNeXt weights know their own).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--resolution", default=None, metavar="N|HxW",
              help="Evaluation resolution (default: the checkpoint's).")
@click.option("--crop-pct", type=float, default=None,
              help="Resize to resolution/crop-pct, then centre-crop (default: the recipe's, or 0.875).")
@click.option("--no-ema", is_flag=True, help="Evaluate the raw weights even when an EMA exists.")
@click.option("--workers", type=click.IntRange(min=0), default=8, show_default=True)
@click.option("--device", default=None, help="cpu or cuda (default: cuda when available).")
@format_option()
@json_alias
def evaluate_cmd(checkpoint, data, arch, batch_size, resolution, crop_pct, no_ema, workers,
                 device, fmt) -> None:
    """Top-1/top-5 accuracy, loss and images/s of a checkpoint (EMA weights when present).

    \b
    Examples:
      edgeexplore evaluate runs/xxs/best.pt --data folder:/data/imagenet
      edgeexplore evaluate xxs_edgeexplore.pt --data folder:/data/imagenet   # from `convert`
      edgeexplore evaluate edgenext_small.pth --data folder:/data/imagenet --resolution 256
    """
    from ..training.evaluate import evaluate_checkpoint

    m = evaluate_checkpoint(checkpoint, data, arch=arch, batch_size=batch_size,
                            resolution=resolution, crop_pct=crop_pct, use_ema=not no_ema,
                            workers=workers, device=device)
    if m["rank"] != 0:  # under torchrun every rank holds the same totals
        return
    m["resolution"] = "x".join(map(str, m["resolution"]))
    columns = ["checkpoint", "weights", "arch", "top1", next(k for k in m if k.startswith("top")
               and k != "top1"), "loss", "images", "images_per_second", "resolution", "device"]
    emit([m], fmt, [Column(c) for c in columns], title=f"{checkpoint} on {data}")


COMMANDS = [train_cmd, evaluate_cmd]
