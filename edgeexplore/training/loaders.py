"""Data for full training and evaluation: the data-spec language, timm's transforms, and
streaming DataLoaders with worker processes.

Unlike proxy training (pre-decoded uint8 tensors at one resolution), full training decodes every
image every epoch: RandomResizedCrop, RandAugment and random erasing need the original image, as
in the authors' ImageNet code. ``folder:PATH`` and ``cifar10`` therefore always stream from the
files; ``synthetic`` images are generated in memory and turned into PIL images per sample.
Normalisation uses the ImageNet mean/std, so weights converted from the authors' checkpoints
evaluate as they were trained.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..data import load_data, parse_spec
from ..data.folders import extract_cifar10, find_cifar10_archive, find_splits, list_split
from ..errors import EdgeExploreError
from .recipe import TrainRecipe


class FileDataset(Dataset):
    """Image files decoded (PIL, RGB) and transformed per sample, in the loader's workers."""

    def __init__(self, files: list[Path], labels: list[int], transform: Any):
        self.files, self.labels, self.transform = files, labels, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            with Image.open(self.files[i]) as im:
                image = im.convert("RGB")
        except OSError as exc:
            raise EdgeExploreError(f"cannot read image {self.files[i]}: {exc}") from None
        return self.transform(image), self.labels[i]


class TensorDataset(Dataset):
    """In-memory uint8 images [N, 3, H, W] presented as PIL images to the same transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Any):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[i].permute(1, 2, 0).numpy())
        return self.transform(image), int(self.labels[i])


@dataclass
class Splits:
    """The raw train/val sources of a data spec, before transforms."""

    spec: str
    classes: list[str]
    train: tuple[Any, Any]  # (files, labels) or (uint8 images, labels)
    val: tuple[Any, Any]
    in_memory: bool

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def dataset(self, split: str, transform: Any) -> Dataset:
        items, labels = self.train if split == "train" else self.val
        cls = TensorDataset if self.in_memory else FileDataset
        return cls(items, labels, transform)


def open_splits(spec: str, seed: int = 0) -> Splits:
    """Resolve a data spec (``synthetic``, ``cifar10[:PATH]``, ``folder:PATH``) into its splits.

    The spec's ``subset`` / ``val_subset`` options pick balanced per-class subsets; its
    ``resolution`` and ``mode`` options do not apply (the recipe's resolution does, and files
    always stream)."""
    kind, path, options = parse_spec(spec)
    if kind == "synthetic":
        bundle = load_data(spec, seed=seed)
        return Splits(spec, list(bundle.class_names),
                      (bundle.train.images, bundle.train.labels),
                      (bundle.val.images, bundle.val.labels), in_memory=True)
    if kind == "cifar10":
        root, _ = extract_cifar10(find_cifar10_archive(path))
    else:
        root = Path(path).expanduser().resolve()
    train_dir, val_dir = find_splits(root)
    classes = sorted(p.name for p in train_dir.iterdir()
                     if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise EdgeExploreError(f"{train_dir} must hold at least two class folders")
    train = list_split(train_dir, classes, options.get("subset"), seed, 0)
    val = list_split(val_dir, classes, options.get("val_subset"), seed, 1)
    return Splits(spec, classes, (train.files, train.labels), (val.files, val.labels),
                  in_memory=False)


def _posterize(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's posterize, with 0 bits kept giving a black image as Pillow < 11 did.

    RandAugment ``rand-m9-mstd0.5-inc1`` (both recipes) reaches magnitude 10 now and then, which
    asks for 0 bits; Pillow 11+ raises on that, which would end an ImageNet run hours in."""
    from PIL import ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def _safe_posterize(transform: Any) -> Any:
    from timm.data.auto_augment import RandAugment, posterize

    for t in getattr(transform, "transforms", ()):
        if isinstance(t, RandAugment):
            for op in t.ops:
                if op.aug_fn is posterize:
                    op.aug_fn = _posterize
    return transform


def train_transform(recipe: TrainRecipe, resolution: tuple[int, int]) -> Any:
    from timm.data import create_transform

    return _safe_posterize(create_transform(
        resolution,
        is_training=True,
        scale=recipe.scale,
        color_jitter=recipe.color_jitter,
        auto_augment=recipe.auto_augment,
        interpolation=recipe.interpolation,
        re_prob=recipe.reprob,
        re_mode=recipe.remode,
        re_count=1,
    ))


def eval_transform(resolution: tuple[int, int], crop_pct: float, interpolation: str) -> Any:
    from timm.data import create_transform

    return create_transform(
        resolution, is_training=False, crop_pct=crop_pct, interpolation=interpolation
    )


class ShardSampler(Sampler[int]):
    """Rank r of W takes every W-th index from r: each image is evaluated exactly once (the
    DistributedSampler pads with repeats, which would bias the accuracy)."""

    def __init__(self, n: int, rank: int, world_size: int):
        self.indices = list(range(rank, n, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def workers_for(requested: int, local_world: int) -> int:
    """Worker processes per training process, capped so all of a node's processes share its CPUs."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(requested, (cpus or 1) // max(1, local_world) - 1))


def train_loader(dataset: Dataset, batch_size: int, rank: int, world_size: int, seed: int,
                 workers: int, pin: bool) -> tuple[DataLoader, DistributedSampler]:
    """Shuffled, sharded, last partial batch dropped (mixup pairs need full, even batches).

    The sampler's order depends only on (seed, epoch), via ``set_epoch``, so a resumed run
    draws the same images in the same order as an uninterrupted one. Workers are not persistent:
    a persistent worker seeds its RNG once and carries it across epochs, which a resumed run
    (new workers, seeded from the restored main RNG) cannot reproduce."""
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=seed, drop_last=False)
    if len(sampler) < batch_size:
        raise EdgeExploreError(
            f"the training split has {len(dataset)} images, fewer than one batch of {batch_size} "
            f"per process ({world_size} processes); lower --batch-size"
        )
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        pin_memory=pin, drop_last=True)
    return loader, sampler


def eval_loader(dataset: Dataset, batch_size: int, rank: int, world_size: int, workers: int,
                pin: bool) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size,
                      sampler=ShardSampler(len(dataset), rank, world_size),
                      num_workers=workers, pin_memory=pin)
