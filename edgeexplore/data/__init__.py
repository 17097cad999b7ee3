"""Datasets for proxy training: the built-in synthetic task, CIFAR-10, ImageFolder trees.

``load_data(spec)`` is the one entry point. A spec is ``KIND`` or ``KIND:ARGS`` where ARGS is a
comma-separated list of ``key=value`` options, plus (for ``folder`` and ``cifar10``) one path:

* ``synthetic`` / ``synthetic:classes=10,train=2000,val=500,hint=0`` -- generated, no download;
* ``cifar10`` / ``cifar10:PATH`` -- the CIFAR-10 JPEG archive, extracted once into the cache;
* ``folder:PATH`` / ``folder:PATH,subset=100`` -- ``PATH/train/<class>/*`` and ``PATH/val/`` (or
  ``test/``).

Options every kind takes: ``subset`` (training images per class), ``val_subset`` (validation
images per class), ``resolution`` (``64`` or ``96x64``, by
the one rule of :func:`edgeexplore.config.parse_resolution`); ``cifar10`` and ``folder`` also take
``mode`` (``auto`` | ``memory`` | ``stream``). Keyword arguments of :func:`load_data` win over
the same options in the spec.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..config import parse_resolution
from ..errors import ConfigError, EdgeExploreError
from . import synthetic
from .bundle import DataBundle, Split, TensorSplit, augment_batch, channel_stats, normalise_batch
from .folders import StreamSplit, cache_root, extract_cifar10, find_cifar10_archive, load_folder

__all__ = [
    "DataBundle",
    "Split",
    "StreamSplit",
    "TensorSplit",
    "augment_batch",
    "cache_root",
    "clear_memory_cache",
    "load_data",
    "normalise_batch",
    "parse_resolution",
    "parse_spec",
]

KINDS = ("synthetic", "cifar10", "folder")
COMMON_OPTIONS = {"subset": int, "val_subset": int, "resolution": str}
OPTIONS: dict[str, dict[str, type]] = {
    "synthetic": {"classes": int, "train": int, "val": int, "hint": float, **COMMON_OPTIONS},
    "cifar10": {"mode": str, **COMMON_OPTIONS},
    "folder": {"mode": str, **COMMON_OPTIONS},
}
SYNTHETIC_DEFAULTS = {"classes": 10, "train": 2000, "val": 500}
DEFAULT_SYNTHETIC_RESOLUTION = (32, 32)
MODES = ("auto", "memory", "stream")

# One process often loads the same data for many trials; bundles are read-only, so share them.
_MEMORY_CACHE: dict[tuple, DataBundle] = {}
_MEMORY_CACHE_SIZE = 4


def clear_memory_cache() -> None:
    _MEMORY_CACHE.clear()


def parse_spec(spec: str) -> tuple[str, str | None, dict[str, Any]]:
    """``"folder:/data/x,subset=10"`` → ``("folder", "/data/x", {"subset": 10})``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"data spec must be a non-empty string like 'synthetic', not {spec!r}")
    kind, _, rest = spec.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ConfigError(
            f"unknown data kind {kind!r} in spec {spec!r}; use one of: synthetic, cifar10, folder:PATH"
        )
    path: str | None = None
    options: dict[str, Any] = {}
    allowed = OPTIONS[kind]
    for item in (p.strip() for p in rest.split(",")) if rest else ():
        if not item:
            continue
        if "=" not in item:
            if kind == "synthetic" or path is not None:
                raise ConfigError(f"data spec {spec!r}: expected key=value, got {item!r}")
            path = item
            continue
        key, _, value = (s.strip() for s in item.partition("="))
        if key not in allowed:
            raise ConfigError(
                f"data spec {spec!r}: unknown option {key!r} for {kind}; valid: {', '.join(allowed)}"
            )
        what = "a number" if allowed[key] is float else "an integer"
        try:
            options[key] = allowed[key](value)
        except ValueError:
            raise ConfigError(
                f"data spec {spec!r}: option {key!r} must be {what}, not {value!r}"
            ) from None
        if allowed[key] is float and not 0 <= options[key] <= 1:
            raise ConfigError(
                f"data spec {spec!r}: option {key!r} must be between 0 and 1, not {value!r}"
            )
        if allowed[key] is int and options[key] <= 0:
            raise ConfigError(f"data spec {spec!r}: option {key!r} must be positive, not {value!r}")
        if key == "resolution":
            try:
                parse_resolution(value)
            except ConfigError as e:
                raise ConfigError(f"data spec {spec!r}: {e}") from None
    if "mode" in options and options["mode"] not in MODES:
        raise ConfigError(f"data spec {spec!r}: mode must be one of {', '.join(MODES)}")
    if kind == "folder" and not path:
        raise ConfigError(f"data spec {spec!r}: give the folder, as 'folder:PATH'")
    return kind, path, options


def check_spec(spec: str) -> None:
    """Refuse ``spec`` without loading anything: a malformed spec, or a folder that is not
    there (for commands that would otherwise find out only after other work)."""
    kind, path, _ = parse_spec(spec)
    if kind == "folder" and path and not Path(path).expanduser().is_dir():
        raise EdgeExploreError(f"data folder {path} does not exist")


def _positive(name: str, value: int | None) -> int | None:
    if value is not None and (not isinstance(value, int) or value <= 0):
        raise ConfigError(f"{name} must be a positive number of images per class, not {value!r}")
    return value


def load_data(
    spec: str,
    resolution: int | tuple[int, int] | str | None = None,
    subset: int | None = None,
    val_subset: int | None = None,
    seed: int = 0,
) -> DataBundle:
    """Load the dataset named by ``spec`` (see the module docstring) as a :class:`DataBundle`.

    ``subset`` / ``val_subset`` are images per class (a balanced random subset drawn with
    ``seed``); ``resolution`` resizes (cover, then centre crop). Missing data raises
    :class:`~edgeexplore.errors.EdgeExploreError` naming what was looked for.
    """
    kind, path, options = parse_spec(spec)
    if resolution is None and "resolution" in options:
        resolution = options["resolution"]
    res = parse_resolution(resolution) if resolution is not None else None
    subset = _positive("subset", subset if subset is not None else options.get("subset"))
    val_subset = _positive(
        "val_subset", val_subset if val_subset is not None else options.get("val_subset")
    )
    key = (kind, path, tuple(sorted(options.items())), res, subset, val_subset, seed)
    if kind != "folder" and key in _MEMORY_CACHE:
        return _MEMORY_CACHE[key]

    if kind == "synthetic":
        bundle = _load_synthetic(spec, options, res, subset, val_subset, seed)
    else:
        if kind == "cifar10":
            archive = find_cifar10_archive(path)
            root, extract_seconds = extract_cifar10(archive)
            name, source = "cifar10", archive
        else:
            root, extract_seconds, source = Path(path), 0.0, Path(path)
            name = f"folder:{root.name}"
        data = load_folder(root, res, subset, val_subset, seed, options.get("mode", "auto"))
        bundle = DataBundle(
            name=name,
            spec=spec,
            train=data.train,
            val=data.val,
            num_classes=len(data.classes),
            class_names=data.classes,
            resolution=data.resolution,
            mean=data.mean,
            std=data.std,
            crop_padding=max(1, round(min(data.resolution) / 8)),
            from_cache=data.from_cache,
            source=source,
            info={**data.info, "extract_seconds": round(extract_seconds, 3)},
        )
    if kind != "folder":  # a folder can change on disk; its on-disk cache checks the listing
        if len(_MEMORY_CACHE) >= _MEMORY_CACHE_SIZE:
            _MEMORY_CACHE.pop(next(iter(_MEMORY_CACHE)))
        _MEMORY_CACHE[key] = bundle
    return bundle


def _load_synthetic(
    spec: str,
    options: dict[str, Any],
    res: tuple[int, int] | None,
    subset: int | None,
    val_subset: int | None,
    seed: int,
) -> DataBundle:
    started = time.perf_counter()
    opts = {**SYNTHETIC_DEFAULTS, **{k: v for k, v in options.items() if k in SYNTHETIC_DEFAULTS}}
    classes = opts["classes"]
    n_train = subset * classes if subset else opts["train"]
    n_val = val_subset * classes if val_subset else opts["val"]
    if n_train < classes or n_val < classes:
        raise ConfigError(f"synthetic data needs at least one image per class ({classes} classes)")
    res = res or DEFAULT_SYNTHETIC_RESOLUTION
    hint = options.get("hint", synthetic.DEFAULT_HINT)
    train_x, train_y = synthetic.generate(n_train, classes, res, seed, stream=0, hint=hint)
    val_x, val_y = synthetic.generate(n_val, classes, res, seed, stream=1, hint=hint)
    mean, std = channel_stats(train_x)
    return DataBundle(
        name="synthetic",
        spec=spec,
        train=TensorSplit(train_x, train_y),
        val=TensorSplit(val_x, val_y),
        num_classes=classes,
        class_names=synthetic.class_names(classes),
        resolution=res,
        mean=mean,
        std=std,
        crop_padding=max(1, round(min(res) / 8)),
        hflip=False,  # a flip turns diagonal stripes into anti-diagonal ones: another class
        info={
            "generate_seconds": round(time.perf_counter() - started, 3),
            "seed": seed,
            "hint": hint,
        },
    )
