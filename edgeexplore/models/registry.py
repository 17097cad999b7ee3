"""Registries of block kinds and macro layouts: how new families plug into the backbone.

The backbone (:mod:`edgeexplore.models.backbone`) never names a block class. For each stage it
looks up the builder registered for ``stage.block`` and asks it for the stage's blocks; for the
whole network it looks up the builder registered for ``arch.macro`` and asks it for the stem,
the three downsamplers and the norms around the head. A sibling family therefore adds a block
kind or a macro layout by registering a function, without editing the backbone:

.. code-block:: python

    from edgeexplore.models.registry import StageContext, register_block

    @register_block("sdta")
    def build_sdta_stage(ctx: StageContext) -> list[nn.Module]:
        width = ctx.stage.width
        return [MyBlock(width, drop_path=p) for p in ctx.drop_path]

Contract of a **block builder** ``fn(ctx: StageContext) -> list[nn.Module]``:

* it returns ``ctx.stage.depth`` modules or any other number it documents (an EdgeNeXt stage
  returns its conv encoders followed by one SDTA block); ``ctx.drop_path`` holds one stochastic
  depth rate per block (``len == ctx.stage.depth``);
* every module maps an NCHW tensor of ``ctx.stage.width`` channels to one of the same shape and
  accepts any spatial size the backbone can produce (input sides multiple of 32, so stage maps
  are (H/4, W/4) ... (H/32, W/32), non-square included); ``ctx.nominal_size`` is the stage's map
  size at ``arch.resolution``, for blocks whose parameters depend on a nominal size (GCC);
* ``ctx.in_width`` is the width coming out of the previous stage (the downsampler converts it
  to ``ctx.stage.width`` before the blocks run; blocks rarely need it).

Contract of a **macro builder** ``fn(arch: ArchConfig) -> Macro``: see :class:`Macro`.

Every kind in :data:`edgeexplore.config.BLOCKS` and every name in
:data:`edgeexplore.config.MACROS` must have a builder; :func:`check_registries` says which lack one.
Builders are registered when their module is imported; :mod:`edgeexplore.models` imports all
built-in ones (add your module to its import list).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..config import BLOCKS, MACROS, ArchConfig, StageConfig
from ..errors import ConfigError


@dataclass(frozen=True)
class StageContext:
    """Everything a block builder may need to build one stage's blocks."""

    arch: ArchConfig
    #: 0-based stage index
    index: int
    stage: StageConfig
    #: channel width coming out of the previous stage (the stem's width for stage 0)
    in_width: int
    #: one stochastic-depth rate per block, rising linearly over the whole network
    drop_path: list[float]
    #: (H, W) of this stage's feature map at ``arch.resolution``
    nominal_size: tuple[int, int]


@dataclass
class Macro:
    """The parts of a backbone around its stages.

    * ``stem``: NCHW ``arch.in_chans`` channels → ``stages[0].width`` channels, stride 4.
    * ``downsamplers``: exactly 3 modules, the one at position i-1 runs before stage i (i = 1..3)
      and maps ``stages[i-1].width`` → ``stages[i].width`` channels with stride 2.
    * ``final_norm``: applied to the last stage's NCHW map before pooling (EdgeViT: BatchNorm2d),
      ``nn.Identity()`` if the layout has none.
    * ``head_norm``: applied to the pooled (B, C) vector before the classifier (EdgeNeXt:
      LayerNorm), ``nn.Identity()`` if the layout has none.
    * ``pool``: how the global average is taken; the values are the same, only fvcore's count
      differs: ``"mean"`` (``x.mean((2, 3))``, which fvcore skips: the EdgeViT authors' figures)
      or ``"adaptive"`` (``adaptive_avg_pool2d``, which fvcore counts as one flop per input
      element: timm's figures for its models, e.g. EdgeNeXt).

    The classifier itself (a Linear after global average pooling) is the backbone's, so
    ``reset_classifier`` works the same for every layout.
    """

    stem: nn.Module
    downsamplers: list[nn.Module]
    final_norm: nn.Module
    head_norm: nn.Module
    pool: str = "mean"

    def __post_init__(self) -> None:
        if len(self.downsamplers) != 3:
            raise ValueError(f"a macro has 3 downsamplers, not {len(self.downsamplers)}")
        if self.pool not in ("mean", "adaptive"):
            raise ValueError(f"pool must be 'mean' or 'adaptive', not {self.pool!r}")


BlockBuilder = Callable[[StageContext], list[nn.Module]]
MacroBuilder = Callable[[ArchConfig], Macro]

_BLOCK_BUILDERS: dict[str, BlockBuilder] = {}
_MACRO_BUILDERS: dict[str, MacroBuilder] = {}


def register_block(kind: str) -> Callable[[BlockBuilder], BlockBuilder]:
    """Decorator: register ``fn(ctx) -> list[nn.Module]`` as the builder of block kind ``kind``."""

    def deco(fn: BlockBuilder) -> BlockBuilder:
        if kind in _BLOCK_BUILDERS and _BLOCK_BUILDERS[kind] is not fn:
            raise ValueError(f"block kind {kind!r} already has a builder")
        _BLOCK_BUILDERS[kind] = fn
        return fn

    return deco


def register_macro(name: str) -> Callable[[MacroBuilder], MacroBuilder]:
    """Decorator: register ``fn(arch) -> Macro`` as the builder of macro layout ``name``."""

    def deco(fn: MacroBuilder) -> MacroBuilder:
        if name in _MACRO_BUILDERS and _MACRO_BUILDERS[name] is not fn:
            raise ValueError(f"macro layout {name!r} already has a builder")
        _MACRO_BUILDERS[name] = fn
        return fn

    return deco


def block_builder(kind: str) -> BlockBuilder:
    """The builder registered for block kind ``kind`` (ConfigError if none)."""
    try:
        return _BLOCK_BUILDERS[kind]
    except KeyError:
        known = ", ".join(sorted(_BLOCK_BUILDERS)) or "none"
        raise ConfigError(f"block kind {kind!r} has no builder (built: {known})") from None


def macro_builder(name: str) -> MacroBuilder:
    """The builder registered for macro layout ``name`` (ConfigError if none)."""
    try:
        return _MACRO_BUILDERS[name]
    except KeyError:
        known = ", ".join(sorted(_MACRO_BUILDERS)) or "none"
        raise ConfigError(f"macro layout {name!r} has no builder (built: {known})") from None


def registered_blocks() -> list[str]:
    return sorted(_BLOCK_BUILDERS)


def registered_macros() -> list[str]:
    return sorted(_MACRO_BUILDERS)


def check_registries() -> list[str]:
    """Names in config.BLOCKS / config.MACROS without a builder (empty when all is well)."""
    missing = [f"block {k!r}" for k in BLOCKS if k not in _BLOCK_BUILDERS]
    missing += [f"macro {m!r}" for m in MACROS if m not in _MACRO_BUILDERS]
    return missing
