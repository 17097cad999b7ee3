"""Full-training recipes: the authors' published ImageNet recipes as shipped YAML files.

``load_recipe("edgevit")`` / ``load_recipe("edgenext")`` read ``training/recipes/NAME.yaml``;
any other value is a path to a YAML file holding some of :class:`TrainRecipe`'s fields (the
rest keep their defaults, which are the EdgeViT/DeiT recipe). Unknown keys are an error, so a
typo never silently trains with a default.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, dataclass_values
from ..yamlfile import read_yaml

RECIPES_DIR = Path(__file__).with_name("recipes")
AUTO_FLAGS = ("auto", True, False)


@dataclass
class TrainRecipe:
    """Every setting of a full training run. ``batch_size`` is per process; the learning rate
    applied is ``lr * global_batch / lr_base_batch`` with global batch = batch_size × processes
    × accum_steps (the linear scaling rule both papers use)."""

    epochs: int = 300
    batch_size: int = 256
    lr: float = 5e-4
    lr_base_batch: int = 512
    min_lr: float = 1e-5
    warmup_epochs: float = 5
    warmup_lr: float = 1e-6
    opt: str = "adamw"
    opt_eps: float = 1e-8
    weight_decay: float = 0.05
    grad_clip: float | None = None
    label_smoothing: float = 0.1
    #: timm RandAugment string, or null for none
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    color_jitter: float = 0.4
    interpolation: str = "bicubic"
    #: RandomResizedCrop area range
    scale: tuple[float, float] = (0.08, 1.0)
    #: random erasing probability and mode
    reprob: float = 0.25
    remode: str = "pixel"
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    drop_path: float = 0.1
    ema: bool = True
    ema_decay: float = 0.99996
    #: micro-batches per optimizer step (EdgeNeXt's update_freq)
    accum_steps: int = 1
    #: evaluation resize: shorter side resolution / crop_pct, then a centre crop
    crop_pct: float = 0.875
    #: training resolution (N or [H, W]); null: the architecture's own
    resolution: int | tuple[int, int] | None = None
    amp: bool | str = "auto"  # auto: on CUDA only
    amp_dtype: str = "auto"  # bfloat16 | float16 | auto (bfloat16 where the GPU supports it)
    channels_last: bool | str = "auto"  # auto: on CUDA only
    #: data-loading worker processes per training process (capped by the CPUs there are)
    workers: int = 8

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "lr_base_batch", "accum_steps"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("workers", self.workers, minimum=0)
        _check_number("lr", self.lr, positive=True)
        for name in ("min_lr", "warmup_epochs", "warmup_lr", "weight_decay", "opt_eps",
                     "color_jitter", "mixup", "cutmix"):
            _check_number(name, getattr(self, name))
        if self.grad_clip is not None:
            _check_number("grad_clip", self.grad_clip, positive=True)
        for name in ("label_smoothing", "reprob", "drop_path", "mixup_prob", "mixup_switch_prob"):
            value = _check_number(name, getattr(self, name))
            if not value <= 1 or (name in ("label_smoothing", "drop_path") and value == 1):
                raise ConfigError(f"recipe: {name} must be between 0 and 1, not {value!r}")
        ema_decay = _check_number("ema_decay", self.ema_decay)
        if not ema_decay < 1:
            raise ConfigError(f"recipe: ema_decay must be below 1, not {ema_decay!r}")
        crop = _check_number("crop_pct", self.crop_pct, positive=True)
        if crop > 1:
            raise ConfigError(f"recipe: crop_pct must be in (0, 1], not {crop!r}")
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise ConfigError(
                f"recipe: warmup_epochs ({self.warmup_epochs}) must be below epochs ({self.epochs})"
            )
        if self.min_lr > self.lr:
            raise ConfigError(f"recipe: min_lr ({self.min_lr}) is above lr ({self.lr})")
        if not isinstance(self.ema, bool):
            raise ConfigError(f"recipe: ema must be true or false, not {self.ema!r}")
        for name in ("amp", "channels_last"):
            if getattr(self, name) not in AUTO_FLAGS:
                raise ConfigError(f"recipe: {name} must be true, false or 'auto'")
        if self.amp_dtype not in ("auto", "bfloat16", "float16"):
            raise ConfigError("recipe: amp_dtype must be 'auto', 'bfloat16' or 'float16'")
        if self.remode not in ("pixel", "rand", "const"):
            raise ConfigError(f"recipe: remode must be pixel, rand or const, not {self.remode!r}")
        if self.interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ConfigError(
                f"recipe: interpolation must be bilinear, bicubic or nearest, not {self.interpolation!r}"
            )
        scale = tuple(self.scale) if isinstance(self.scale, (list, tuple)) else ()
        if len(scale) != 2 or not all(isinstance(s, (int, float)) for s in scale) \
                or not 0 < scale[0] <= scale[1] <= 1:
            raise ConfigError(f"recipe: scale must be [min, max] with 0 < min <= max <= 1, "
                              f"not {self.scale!r}")
        self.scale = (float(scale[0]), float(scale[1]))
        if self.resolution is not None:
            from ..config import parse_resolution

            self.resolution = parse_resolution(self.resolution)
        if (self.mixup > 0 or self.cutmix > 0) and self.mixup_prob > 0 and self.batch_size % 2:
            raise ConfigError(f"recipe: mixup/cutmix need an even batch_size, not {self.batch_size}")

    @property
    def mixes(self) -> bool:
        return (self.mixup > 0 or self.cutmix > 0) and self.mixup_prob > 0

    def scaled_lr(self, world_size: int) -> float:
        """The learning rate applied: ``lr`` scaled linearly by the global batch."""
        return self.lr * self.batch_size * world_size * self.accum_steps / self.lr_base_batch

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None, where: str = "recipe") -> TrainRecipe:
        return cls(**dataclass_values(cls, values, where))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["scale"] = list(self.scale)
        if self.resolution is not None:
            out["resolution"] = list(self.resolution)
        return out

    def replace(self, **changes: Any) -> TrainRecipe:
        """A copy with ``changes`` (None values are ignored: unset command-line options)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"recipe: {name} must be an integer >= {minimum}, not {value!r}")


def _check_number(name: str, value: Any, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (positive and value == 0):
        what = "a positive number" if positive else "a number >= 0"
        raise ConfigError(f"recipe: {name} must be {what}, not {value!r}")
    return float(value)


def shipped_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(name_or_path: str | Path) -> TrainRecipe:
    """A shipped recipe by name (``edgevit``, ``edgenext``) or a YAML file of recipe fields."""
    text = str(name_or_path)
    path = RECIPES_DIR / f"{text}.yaml" if text in shipped_recipes() else Path(text)
    if path.parent != RECIPES_DIR and path.suffix not in (".yaml", ".yml") and not path.exists():
        raise ConfigError(
            f"unknown recipe {text!r}: use {' or '.join(shipped_recipes())} or a YAML file"
        )
    data = read_yaml(path, "recipe")
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping of recipe fields")
    return TrainRecipe.from_dict(data, where=f"recipe {path}")
