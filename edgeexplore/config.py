"""ArchConfig: the frozen, JSON-serialisable description of a backbone.

An :class:`ArchConfig` is the unit of everything in edgeexplore: the search samples them, the
builder turns them into modules, the store keys results by their :attr:`ArchConfig.hash`. Two
configs that build the same network must hash the same, so options that a block ignores (the
sampler of a block without sparse attention, say) are reset to their defaults on construction.

This module imports no torch: validating a config is cheap enough to do on every sample.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, reject_unknown_keys

# Importing the package declares every built-in block kind and macro layout (torch-free);
# BLOCKS and MACROS stay importable from here, the lookups the rest of the code uses.
from .kinds import BLOCKS, MACROS, get_block_kind, get_macro  # noqa: F401

NUM_STAGES = 4
#: sanity bounds on one stage: far beyond any edge backbone, low enough that a typo (an extra
#: zero or six) is caught here instead of by an out-of-memory error while building
MAX_DEPTH = 64
MAX_WIDTH = 8192
#: more classes than any image data set has (ImageNet-21k: 21,841): a typo, not a head to build
MAX_CLASSES = 100_000
#: the same for an input side (pixels)
MAX_SIDE = 4096
#: Total downsampling of the pyramid (4× stem, then three 2× downsamplers): input sides must be
#: multiples of it.
STRIDE = 32
STAGE_STRIDES = (4, 8, 16, 32)


#: the block kind of a stage that names none (in configs and in search-space files)
DEFAULT_BLOCK = "lgl"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class StageConfig:
    """One stage of the pyramid: ``depth`` blocks of kind ``block`` at ``width`` channels."""

    depth: int
    width: int
    heads: int = 1
    mlp_ratio: float = 4.0
    sample_rate: int = 1
    block: str = DEFAULT_BLOCK
    #: the block's options, normalised to a sorted tuple of (name, value) with defaults filled in
    options: tuple[tuple[str, Any], ...] | Mapping[str, Any] = ()

    def __post_init__(self) -> None:
        for name in ("depth", "width", "heads", "sample_rate"):
            if not _is_int(getattr(self, name)):
                raise ConfigError(f"{name} must be an integer, not {getattr(self, name)!r}")
        if isinstance(self.mlp_ratio, bool) or not isinstance(self.mlp_ratio, (int, float)):
            raise ConfigError(f"mlp_ratio must be a number, not {self.mlp_ratio!r}")
        object.__setattr__(self, "mlp_ratio", float(self.mlp_ratio))
        if self.depth < 1:
            raise ConfigError(f"depth must be at least 1, not {self.depth}")
        if self.width < 1:
            raise ConfigError(f"width must be at least 1, not {self.width}")
        if self.heads < 1:
            raise ConfigError(f"heads must be at least 1, not {self.heads}")
        if self.sample_rate < 1:
            raise ConfigError(f"sample rate must be at least 1, not {self.sample_rate}")
        if not math.isfinite(self.mlp_ratio) or self.mlp_ratio <= 0:
            raise ConfigError(f"mlp_ratio must be a positive number, not {self.mlp_ratio}")
        if self.depth > MAX_DEPTH:
            raise ConfigError(f"depth {self.depth} is more than a stage may have ({MAX_DEPTH})")
        if self.width > MAX_WIDTH:
            raise ConfigError(f"width {self.width} is more than a stage may have ({MAX_WIDTH})")
        if self.hidden < 1:
            raise ConfigError(f"width {self.width} x mlp_ratio {self.mlp_ratio} leaves the MLP "
                              "no hidden units")
        if self.options is not None and not isinstance(self.options, (Mapping, tuple)):
            raise ConfigError("options must be a mapping of option names to values, not "
                              f"{type(self.options).__name__}")
        spec = get_block_kind(self.block)
        if not spec.uses_heads:
            object.__setattr__(self, "heads", 1)
        elif self.width % self.heads:
            raise ConfigError(f"width {self.width} is not divisible by {self.heads} heads")
        raw = dict(self.options) if self.options else {}
        norm = spec.normalise(raw, self.sample_rate)
        if spec.check is not None:
            spec.check(self, norm)
        object.__setattr__(self, "options", tuple(sorted(norm.items())))

    @property
    def opts(self) -> dict[str, Any]:
        """The block's options as a plain dict (defaults included)."""
        return dict(self.options)

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def hidden(self) -> int:
        """MLP hidden width, rounded down as the authors' code does."""
        return int(self.width * self.mlp_ratio)

    def to_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth,
            "width": self.width,
            "heads": self.heads,
            "mlp_ratio": self.mlp_ratio,
            "sample_rate": self.sample_rate,
            "block": self.block,
            "options": self.opts,
        }

    def replace(self, **changes: Any) -> StageConfig:
        if "block" in changes and "options" not in changes:
            changes["options"] = {}
        return dataclasses.replace(self, **changes)


_STAGE_KEYS = {f.name for f in dataclasses.fields(StageConfig)}


@dataclass(frozen=True)
class ArchConfig:
    """A whole backbone: four stages plus input resolution, classes and regularisation."""

    stages: tuple[StageConfig, ...]
    resolution: tuple[int, int] = (224, 224)
    num_classes: int = 1000
    drop_path_rate: float = 0.0
    qkv_bias: bool = True
    macro: str = "edgevit"
    in_chans: int = 3

    def __post_init__(self) -> None:
        stages = tuple(self.stages)
        if len(stages) != NUM_STAGES:
            raise ConfigError(f"an architecture has {NUM_STAGES} stages, not {len(stages)}")
        for i, s in enumerate(stages):
            if not isinstance(s, StageConfig):
                raise ConfigError(f"stage {i + 1}: expected a StageConfig, not {type(s).__name__}")
        object.__setattr__(self, "stages", stages)
        object.__setattr__(self, "resolution", parse_resolution(self.resolution))
        if not _is_int(self.num_classes) or self.num_classes < 0:
            raise ConfigError(f"num_classes must be a non-negative integer, not {self.num_classes!r}")
        if self.num_classes > MAX_CLASSES:
            raise ConfigError(f"num_classes {self.num_classes} is more than an architecture may "
                              f"have ({MAX_CLASSES})")
        if not _is_int(self.in_chans) or self.in_chans < 1:
            raise ConfigError(f"in_chans must be a positive integer, not {self.in_chans!r}")
        if isinstance(self.drop_path_rate, bool) or not isinstance(self.drop_path_rate, (int, float)) \
                or not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"drop_path_rate must be in [0, 1), not {self.drop_path_rate!r}")
        object.__setattr__(self, "drop_path_rate", float(self.drop_path_rate))
        if not isinstance(self.qkv_bias, bool):
            raise ConfigError(f"qkv_bias must be true or false, not {self.qkv_bias!r}")
        get_macro(self.macro)

    # -- derived facts -----------------------------------------------------------------------
    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(s.depth for s in self.stages)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(s.width for s in self.stages)

    @property
    def num_blocks(self) -> int:
        return sum(self.depths)

    def stage_sizes(self, resolution: tuple[int, int] | int | None = None) -> list[tuple[int, int]]:
        """Feature-map (H, W) of each stage at ``resolution`` (default: the config's)."""
        h, w = parse_resolution(resolution) if resolution is not None else self.resolution
        return [(h // s, w // s) for s in STAGE_STRIDES]

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "stages": [s.to_dict() for s in self.stages],
            "resolution": list(self.resolution),
            "num_classes": self.num_classes,
            "drop_path_rate": self.drop_path_rate,
            "qkv_bias": self.qkv_bias,
            "macro": self.macro,
            "in_chans": self.in_chans,
        }

    def to_json(self, indent: int | None = None) -> str:
        """Canonical JSON: sorted keys, no whitespace unless ``indent`` is given."""
        seps = (",", ":") if indent is None else (",", ": ")
        return json.dumps(self.to_dict(), sort_keys=True, separators=seps, indent=indent)

    @property
    def hash(self) -> str:
        """Stable 16-hex-digit identity of the architecture (sha256 of the canonical JSON)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"an architecture must be a JSON object, not {type(data).__name__}")
        reject_unknown_keys(data, sorted(f.name for f in dataclasses.fields(cls)))
        if "stages" not in data:
            raise ConfigError("the architecture has no 'stages' list")
        raw_stages = data["stages"]
        if not isinstance(raw_stages, (list, tuple)):
            raise ConfigError("'stages' must be a list of stage objects")
        stages = []
        for i, st in enumerate(raw_stages):
            stages.append(_stage_from_dict(i, st))
        kwargs = {k: v for k, v in data.items() if k != "stages"}
        if "resolution" in kwargs and isinstance(kwargs["resolution"], list):
            kwargs["resolution"] = tuple(kwargs["resolution"])
        return cls(stages=tuple(stages), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"not valid JSON: {e.msg} at line {e.lineno}") from None
        except RecursionError:  # the decoder recurses once per nested array or object
            raise ConfigError("not valid JSON: nested too deeply") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> ArchConfig:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not a JSON text file") from None
        try:
            return cls.from_json(text)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    # -- edits -------------------------------------------------------------------------------
    def replace(self, **changes: Any) -> ArchConfig:
        return dataclasses.replace(self, **changes)

    def with_stage(self, index: int, **changes: Any) -> ArchConfig:
        """A copy with stage ``index`` (0-based) changed."""
        stages = list(self.stages)
        try:
            stages[index] = stages[index].replace(**changes)
        except ConfigError as e:
            raise ConfigError(f"stage {index + 1}: {e}") from None
        return self.replace(stages=tuple(stages))

    def describe(self) -> str:
        """One line per stage, for tables and logs."""
        parts = []
        for i, s in enumerate(self.stages, 1):
            non_default = {k: v for k, v in s.options if v != BLOCKS[s.block].options[k].default}
            extra = "".join(f" {k}={v}" for k, v in non_default.items())
            parts.append(
                f"stage{i}: {s.block}{extra} d={s.depth} w={s.width} h={s.heads} "
                f"mlp={s.mlp_ratio:g} sr={s.sample_rate}"
            )
        return "; ".join(parts)


def _stage_from_dict(index: int, data: Any) -> StageConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"stage {index + 1}: expected an object, not {type(data).__name__}")
    reject_unknown_keys(data, sorted(_STAGE_KEYS), f"stage {index + 1}")
    if "depth" not in data or "width" not in data:
        raise ConfigError(f"stage {index + 1}: 'depth' and 'width' are required")
    try:
        return StageConfig(**data)
    except ConfigError as e:
        raise ConfigError(f"stage {index + 1}: {e}") from None


def parse_resolution(value: Any) -> tuple[int, int]:
    """``224`` or ``(256, 192)`` or ``"256x192"`` → (H, W), each a positive multiple of 32."""
    if isinstance(value, str):
        parts = value.lower().replace("×", "x").split("x")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"resolution {value!r} is not N or HxW") from None
        value = nums[0] if len(nums) == 1 else tuple(nums)
    if _is_int(value):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(_is_int(v) for v in value):
        raise ConfigError(f"resolution must be an integer or a pair (H, W), not {value!r}")
    h, w = value
    if h < STRIDE or w < STRIDE or h % STRIDE or w % STRIDE:
        raise ConfigError(f"input {h}×{w}: both sides must be positive multiples of {STRIDE}")
    if max(h, w) > MAX_SIDE:
        raise ConfigError(f"input {h}×{w}: a side is larger than {MAX_SIDE}")
    return (h, w)


# -- presets -------------------------------------------------------------------------------------

def _edgevit(depths, widths, head_dim) -> ArchConfig:
    return ArchConfig(
        stages=tuple(
            StageConfig(depth=d, width=w, heads=w // head_dim, mlp_ratio=4.0, sample_rate=r)
            for d, w, r in zip(depths, widths, (4, 2, 2, 1))
        )
    )


#: Named architectures. Each is an ordinary ArchConfig; the CLI and timm know them by name.
PRESETS: dict[str, ArchConfig] = {
    "edgevit_xxs": _edgevit((1, 1, 3, 2), (36, 72, 144, 288), 36),
    "edgevit_xs": _edgevit((1, 1, 3, 1), (48, 96, 240, 384), 48),
    "edgevit_s": _edgevit((1, 2, 5, 3), (48, 96, 240, 384), 48),
}

PRESET_HELP: dict[str, str] = {
    "edgevit_xxs": "EdgeViT-XXS (official): 4.07M params, 0.56 GFLOPs @224, 74.4% ImageNet top-1",
    "edgevit_xs": "EdgeViT-XS (official): 6.77M params, 1.14 GFLOPs @224, 77.5% ImageNet top-1",
    "edgevit_s": "EdgeViT-S (official): 13.1M params, 1.92 GFLOPs @224, 81.0% ImageNet top-1",
}



def _edgenext(depths, widths, heads) -> ArchConfig:
    """The authors' EdgeNeXt layout (timm ``edgenext_*``), at its 256×256 training resolution."""
    kernels, global_blocks, scales = (3, 5, 7, 9), (0, 1, 1, 1), (2, 2, 3, 4)
    per_stage = zip(depths, widths, kernels, global_blocks, scales, (False, True, False, False))
    return ArchConfig(
        stages=tuple(
            StageConfig(
                depth=d, width=w, heads=heads, mlp_ratio=4.0, block="edgenext",
                options={"kernel": k, "global_blocks": g, "scales": sc, "pos_emb": pe},
            )
            for d, w, k, g, sc, pe in per_stage
        ),
        resolution=(256, 256),
        macro="edgenext",
    )


def _edgevit_hybrid(base: str, stages: dict[int, dict[str, Any]]) -> ArchConfig:
    """An EdgeViT preset with some stages (0-based) swapped for another block kind."""
    cfg = PRESETS[base]
    for i, change in stages.items():
        cfg = cfg.with_stage(i, **change)
    return cfg


PRESETS.update({
    "edgenext_xx_small": _edgenext((2, 2, 6, 2), (24, 48, 88, 168), 4),
    "edgenext_x_small": _edgenext((3, 3, 9, 3), (32, 64, 100, 192), 4),
    "edgenext_small": _edgenext((3, 3, 9, 3), (48, 96, 160, 304), 8),
})
PRESETS.update({
    # the ParC-Net authors' missing "ParC-EdgeViT-XS": GCC replaces LGL where maps are 28 and 14
    "edgevit_xs_gcc": _edgevit_hybrid(
        "edgevit_xs", {1: {"block": "gcc", "sample_rate": 1}, 2: {"block": "gcc", "sample_rate": 1}}
    ),
    # EdgeNeXt stages (conv encoders + one SDTA) in place of LGL in stages 2 and 3
    "edgevit_xs_sdta": _edgevit_hybrid(
        "edgevit_xs",
        {
            1: {"block": "edgenext", "sample_rate": 1,
                "options": {"kernel": 5, "global_blocks": 1, "scales": 2, "pos_emb": True}},
            2: {"block": "edgenext", "sample_rate": 1,
                "options": {"kernel": 7, "global_blocks": 1, "scales": 3}},
        },
    ),
})

PRESET_HELP.update({
    "edgenext_xx_small": "EdgeNeXt-XXS (authors / timm): 1.33M params, 0.26 GFLOPs @256, "
    "71.2% ImageNet top-1",
    "edgenext_x_small": "EdgeNeXt-XS (authors / timm): 2.34M params, 0.54 GFLOPs @256, "
    "75.0% ImageNet top-1",
    "edgenext_small": "EdgeNeXt-S (authors / timm): 5.59M params, 1.26 GFLOPs @256, "
    "79.4% ImageNet top-1",
    "edgevit_xs_gcc": "hybrid: EdgeViT-XS with EdgeFormer GCC blocks in stages 2 and 3 (untrained)",
    "edgevit_xs_sdta": "hybrid: EdgeViT-XS with EdgeNeXt conv+SDTA stages 2 and 3 (untrained)",
})


def get_preset(name: str) -> ArchConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r} (presets: {', '.join(PRESETS)})") from None


def resolve_arch(
    spec: str | ArchConfig,
    *,
    resolution: Any = None,
    num_classes: int | None = None,
) -> ArchConfig:
    """A preset name or the path of a JSON config, with optional overrides."""
    if isinstance(spec, ArchConfig):
        cfg = spec
    elif spec in PRESETS:
        cfg = PRESETS[spec]
    elif Path(spec).suffix == ".json" or Path(spec).exists():
        cfg = ArchConfig.load(spec)
    else:
        raise ConfigError(
            f"{spec!r} is neither a preset ({', '.join(PRESETS)}) nor a JSON config file"
        )
    changes: dict[str, Any] = {}
    if resolution is not None:
        changes["resolution"] = parse_resolution(resolution)
    if num_classes is not None:
        changes["num_classes"] = num_classes
    return cfg.replace(**changes) if changes else cfg
