"""What a block or macro builder receives and returns: how new families plug into the backbone.

The backbone (:mod:`edgeexplore.models.backbone`) never names a block class. For each stage it
asks the declaration of ``stage.block`` (:mod:`edgeexplore.kinds`) for the stage's blocks; for
the whole network it asks the declaration of ``arch.macro`` for the stem, the three downsamplers
and the norms around the head. A family therefore adds a block kind by declaring it on its
builder, without editing the backbone:

.. code-block:: python

    from edgeexplore.kinds import Option, block_kind

    @block_kind("dwres", help="depthwise residual conv", options={"kernel": Option(3, (3, 5))},
                uses_heads=False)
    def build_dwres_stage(ctx: StageContext) -> list[nn.Module]:
        return [MyBlock(ctx.stage.width, ctx.stage.opts["kernel"]) for _ in ctx.drop_path]

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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..config import ArchConfig, StageConfig
from ..kinds import get_block_kind, get_macro


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


def block_builder(kind: str) -> Callable[[StageContext], list[nn.Module]]:
    """The builder declared for block kind ``kind`` (ConfigError if none)."""
    return get_block_kind(kind).builder


def macro_builder(name: str) -> Callable[[ArchConfig], Macro]:
    """The builder declared for macro layout ``name`` (ConfigError if none)."""
    return get_macro(name).builder
