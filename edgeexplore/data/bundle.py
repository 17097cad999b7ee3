"""DataBundle and the two kinds of split: decoded tensors in memory, or a streaming folder.

Both kinds of split yield *uint8* batches ``[B, 3, H, W]`` with int64 labels; augmentation
(random crop with padding, horizontal flip) and normalisation happen afterwards on the training
device (:func:`augment_batch`, :func:`normalise_batch`), so an in-memory dataset costs one
gather per batch and no per-image Python work.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

Batch = tuple[torch.Tensor, torch.Tensor]


class Split(Protocol):
    """What the proxy trainer needs from a split."""

    labels: torch.Tensor

    def __len__(self) -> int: ...

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        device: torch.device | None = None,
    ) -> Iterator[Batch]: ...


def _order(n: int, shuffle: bool, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randperm(n, generator=generator) if shuffle else torch.arange(n)


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


@dataclass
class TensorSplit:
    """A split held in memory as uint8 images ``[N, 3, H, W]`` and int64 labels ``[N]``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def nbytes(self) -> int:
        return self.images.numel() * self.images.element_size()

    def to(self, device: torch.device | str) -> TensorSplit:
        """A copy on ``device`` (a GPU copy of a small dataset saves a host-to-device copy per batch)."""
        return TensorSplit(self.images.to(device), self.labels.to(device))

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        device: torch.device | None = None,
    ) -> Iterator[Batch]:
        order = _order(len(self), shuffle, generator).to(self.images.device)
        stop = num_batches(len(self), batch_size, drop_last) * batch_size
        for start in range(0, min(stop, len(self)), batch_size):
            idx = order[start : start + batch_size]
            x, y = self.images[idx], self.labels[idx]
            if device is not None and x.device != device:
                x, y = _to_device(x, device), _to_device(y, device)
            yield x, y


@dataclass
class DataBundle:
    """A dataset ready for proxy training: two splits plus what it takes to feed a model."""

    name: str
    spec: str
    train: Any  # TensorSplit or folders.StreamSplit (both follow the Split protocol)
    val: Any
    num_classes: int
    class_names: list[str]
    resolution: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    #: random-crop padding in pixels (0 disables the crop)
    crop_padding: int = 4
    #: horizontal flips are off where they change the label (the synthetic task's left/right)
    hflip: bool = True
    #: True when the decoded tensors came from the on-disk cache
    from_cache: bool = False
    source: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def in_memory(self) -> bool:
        return isinstance(self.train, TensorSplit) and isinstance(self.val, TensorSplit)

    def describe(self) -> str:
        h, w = self.resolution
        where = "in memory" if self.in_memory else "streamed from disk"
        return (
            f"{self.name}: {len(self.train)} train / {len(self.val)} val images, "
            f"{self.num_classes} classes, {h}x{w}, {where}"
        )

    def to_dict(self) -> dict[str, Any]:
        """What a study records about its data."""
        return {
            "name": self.name,
            "spec": self.spec,
            "train_images": len(self.train),
            "val_images": len(self.val),
            "num_classes": self.num_classes,
            "resolution": list(self.resolution),
            "mean": list(self.mean),
            "std": list(self.std),
            "in_memory": self.in_memory,
            **{k: v for k, v in self.info.items() if isinstance(v, (int, float, str, bool))},
        }


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple, tuple]:
    """Per-channel mean and std (in [0, 1] units) of uint8 images ``[N, 3, H, W]``."""
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].to(torch.float64) / 255.0
        total += part.sum(dim=(0, 2, 3))
        total_sq += (part * part).sum(dim=(0, 2, 3))
    count = images.numel() // 3
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a small host tensor to ``device`` without waiting for the device: a copy from
    pageable memory would synchronise the CUDA stream once per batch."""
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def augment_batch(
    x: torch.Tensor, padding: int, hflip: bool, generator: torch.Generator | None
) -> torch.Tensor:
    """Random crop (zero padding) and optional horizontal flip of a uint8 batch, in one gather.

    Random numbers come from ``generator`` on the CPU so the result does not depend on the
    device. The result has channels-last strides (the gather produces [B, H, W, C]).
    """
    b, _, h, w = x.shape
    dev = x.device
    if padding > 0:
        x = torch.nn.functional.pad(x, (padding, padding, padding, padding))
        oy = _to_device(torch.randint(0, 2 * padding + 1, (b,), generator=generator), dev)
        ox = _to_device(torch.randint(0, 2 * padding + 1, (b,), generator=generator), dev)
    else:
        oy = ox = torch.zeros(b, dtype=torch.long, device=dev)
    rows = oy[:, None] + torch.arange(h, device=dev)
    cols = torch.arange(w, device=dev).expand(b, w)
    if hflip:
        flip = _to_device(torch.rand(b, generator=generator) < 0.5, dev)
        cols = torch.where(flip[:, None], cols.flip(1), cols)
    cols = ox[:, None] + cols
    bidx = torch.arange(b, device=dev)[:, None, None]
    return x[bidx, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def normalise_batch(
    x: torch.Tensor, mean: torch.Tensor, inv_std: torch.Tensor, channels_last: bool
) -> torch.Tensor:
    """uint8 → float, scaled to [0, 1] and standardised; ``mean``/``inv_std`` are [1, 3, 1, 1]."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = x.contiguous(memory_format=fmt).float()
    return x.mul_(1.0 / 255.0).sub_(mean).mul_(inv_std)
