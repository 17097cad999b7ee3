"""EdgeBackbone: the four-stage pyramid built from an :class:`~edgeexplore.config.ArchConfig`.

The backbone knows no block class: the stem, downsamplers and norms come from the macro builder
registered for ``arch.macro``, each stage's blocks from the block builder registered for
``stage.block`` (see :mod:`edgeexplore.models.registry`). The classifier is always global
pooling (average by default) → ``head_norm`` → Linear, so ``reset_classifier`` works for every
layout.

Module layout (what state-dict keys look like)::

    stem                      macro stem (stride 4)
    stages.{i}.downsample     nn.Identity for stage 0, else the macro's stride-2 downsampler
    stages.{i}.blocks.{j}     the stage's blocks (nn.Sequential)
    norm                      macro final norm on the last NCHW map (EdgeViT: BatchNorm2d)
    global_pool               timm's SelectAdaptivePool2d (no parameters)
    head_norm                 macro norm on the pooled vector (EdgeViT: Identity)
    head                      Linear (Identity when num_classes is 0)

timm's model contract holds for every block kind: ``reset_classifier(n, global_pool)`` with
``''`` / ``'avg'`` / ``'max'`` / ``'avgmax'``, ``forward_head(pre_logits=True)``,
``set_grad_checkpointing``, ``group_matcher``, ``forward_intermediates``; the model scripts with
TorchScript and traces with ``torch.fx.symbolic_trace``. Shape-dependent Python (the input check
here, padding and resizing in the blocks) lives in module-level functions registered with
``torch.fx.wrap``, so FX records them as calls that still run on every forward, instead of
tracing through branches on symbolic sizes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import SelectAdaptivePool2d, trunc_normal_
from timm.models import checkpoint_seq
from torch import nn

from ..config import STAGE_STRIDES, STRIDE, ArchConfig
from ..errors import ConfigError, EdgeExploreError
from .registry import StageContext, block_builder, macro_builder


class EdgeStage(nn.Module):
    """One stage: an optional downsampler, then its blocks."""

    def __init__(self, downsample: nn.Module, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            # each block's activations are dropped after the forward and recomputed in the
            # backward: memory for one block instead of the whole stage
            return checkpoint_seq(self.blocks, x, use_reentrant=False)
        return self.blocks(x)


#: timm's pooling names that keep the feature width ('catavgmax' doubles it: not offered)
POOL_TYPES = ("", "avg", "max", "avgmax")


def check_input(x: torch.Tensor, in_chans: int, stride: int = STRIDE) -> None:
    """A clear error for inputs the backbone cannot take (instead of a shape error deep inside).

    Registered with ``torch.fx.wrap``: a traced graph calls it on real tensors at run time."""
    if x.dim() != 4:
        raise EdgeExploreError(f"expected an NCHW image batch, got a {x.dim()}-d tensor")
    if x.shape[1] != in_chans:
        raise EdgeExploreError(f"expected {in_chans} input channels, got {x.shape[1]}")
    h, w = x.shape[2], x.shape[3]
    if h % stride != 0 or w % stride != 0 or h < stride or w < stride:
        raise EdgeExploreError(f"input {h}×{w}: both sides must be positive multiples of {stride}")


torch.fx.wrap("check_input")


def pretrained_cfg_for(arch: ArchConfig) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` fields, true for this architecture (no weights are published)."""
    h, w = arch.resolution
    return {
        "url": "", "num_classes": arch.num_classes, "input_size": (arch.in_chans, h, w),
        "pool_size": (h // STRIDE, w // STRIDE), "crop_pct": 0.9, "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD, "first_conv": "stem.conv",
        "classifier": "head", "fixed_input_size": False,
        "license": "none: architecture only, no pretrained weights",
    }


class EdgeBackbone(nn.Module):
    """A configurable EdgeViT-family backbone; ``model.arch`` is the config it was built from."""

    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        self.arch = arch
        macro = macro_builder(arch.macro)(arch)
        self.stem = macro.stem
        # linear in the block index over the whole network (plain Python rather than
        # torch.linspace, so building on the meta device for cost counting works)
        n = arch.num_blocks
        rates = [arch.drop_path_rate * i / (n - 1) if n > 1 else 0.0 for i in range(n)]
        sizes = arch.stage_sizes()
        stages = []
        start = 0
        for i, st in enumerate(arch.stages):
            ctx = StageContext(
                arch=arch,
                index=i,
                stage=st,
                in_width=arch.stages[i - 1].width if i else st.width,
                drop_path=rates[start:start + st.depth],
                nominal_size=sizes[i],
            )
            start += st.depth
            blocks = block_builder(st.block)(ctx)
            downsample = macro.downsamplers[i - 1] if i else nn.Identity()
            stages.append(EdgeStage(downsample, blocks))
        self.stages = nn.ModuleList(stages)
        self.norm = macro.final_norm
        self.head_norm = macro.head_norm
        self.adaptive_pool = macro.pool == "adaptive"
        self.global_pool = self._make_pool("avg")
        self.in_chans = arch.in_chans
        self.num_classes = arch.num_classes
        self.num_features = self.head_hidden_size = arch.stages[-1].width
        self.head = self._make_head(arch.num_classes)
        self.feature_info = [
            {"num_chs": st.width, "reduction": STAGE_STRIDES[i], "module": f"stages.{i}"}
            for i, st in enumerate(arch.stages)
        ]
        # timm's build_model_with_cfg replaces these with the registry's copy for presets
        self.pretrained_cfg = self.default_cfg = pretrained_cfg_for(arch)

    # -- classifier --------------------------------------------------------------------------
    def _make_pool(self, pool_type: str) -> SelectAdaptivePool2d:
        # timm's 'fast' pools take x.mean / x.amax, which fvcore skips (the EdgeViT authors'
        # figures); the others adaptive_avg_pool2d, which it counts (see registry.Macro.pool)
        fast = "fast" if pool_type and not self.adaptive_pool else ""
        return SelectAdaptivePool2d(pool_type=fast + pool_type, flatten=True)

    def _make_head(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        head = nn.Linear(self.num_features, num_classes)
        trunc_normal_(head.weight, std=0.02)
        nn.init.zeros_(head.bias)
        return head

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier by a fresh one with ``num_classes`` outputs (0: none) and,
        when given, the pooling: ``'avg'``, ``'max'``, ``'avgmax'`` (their mean) or ``''`` (no
        pooling: ``forward`` returns the (B, C, H/32, W/32) map, with the head norm and any
        classifier applied at every position, as timm's conv heads do)."""
        if global_pool is not None:
            if global_pool not in POOL_TYPES:
                names = ", ".join(repr(p) for p in POOL_TYPES)
                raise ConfigError(f"global_pool must be one of {names}, not {global_pool!r}")
            self.global_pool = self._make_pool(global_pool)
        self.num_classes = num_classes
        self.head = self._make_head(num_classes)
        self.arch = self.arch.replace(num_classes=num_classes)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations."""
        for stage in self.stages:
            stage.grad_checkpointing = enable

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups in depth order, for timm's layer-wise learning-rate decay: the stem,
        then every block (a downsampler with its stage's first block), or every stage when
        ``coarse``; the final norms and the classifier join the last block (timm's
        ``MATCH_PREV_GROUP``, 99999), as in timm's own hierarchical models."""
        blocks: Any = r"^stages\.(\d+)" if coarse else [
            (r"^stages\.(\d+)\.downsample", (0,)),
            (r"^stages\.(\d+)\.blocks\.(\d+)", None),
            (r"^(?:norm|head_norm|head)\.", (99999,)),
        ]
        return {"stem": r"^stem", "blocks": blocks}

    # -- forward -----------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, stages and the final norm: the (B, C, H/32, W/32) map before pooling."""
        check_input(x, self.in_chans)
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool.is_identity():
            # no pooling: norm and classifier act on the channels of every position
            x = self.head_norm(x.permute(0, 2, 3, 1))
            if not pre_logits:
                x = self.head(x)
            return x.permute(0, 3, 1, 2)
        x = self.head_norm(self.global_pool(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-stage feature maps (strides 4, 8, 16, 32) for detection/segmentation heads.

        timm's signature: ``indices`` None = all four stages, an int n = the last n, a sequence =
        those stages (negative from the end); ``norm`` applies the final norm to the last map;
        returns the maps alone with ``intermediates_only``, else ``(final_map, maps)``.
        """
        if output_fmt != "NCHW":
            raise ConfigError(f"only NCHW feature maps are produced, not {output_fmt}")
        take = _take_indices(len(self.stages), indices)
        check_input(x, self.in_chans)
        last = len(self.stages) - 1
        x = self.stem(x)
        maps = []
        for i, stage in enumerate(self.stages):
            if stop_early and i > max(take):
                break
            x = stage(x)
            if i in take:
                maps.append(self.norm(x) if norm and i == last else x)
        if intermediates_only:
            return maps
        return (self.norm(x) if i == last else x), maps

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages (and head) a feature extractor does not need (timm's protocol)."""
        take = _take_indices(len(self.stages), indices)
        keep = max(take) + 1
        self.stages = self.stages[:keep]
        if prune_norm or keep < len(self.arch.stages):
            self.norm = nn.Identity()
        if prune_head:
            self.head_norm = nn.Identity()
            self.reset_classifier(0)
        return take

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage maps (strides 4, 8, 16, 32), without the final norm."""
        return self.forward_intermediates(x, intermediates_only=True)  # type: ignore[return-value]


def _take_indices(n: int, indices: Any) -> list[int]:
    if indices is None:
        return list(range(n))
    if isinstance(indices, int):
        if not 0 < indices <= n:
            raise ConfigError(f"cannot take the last {indices} of {n} stages")
        return list(range(n - indices, n))
    take = []
    for i in indices:
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise ConfigError(f"stage index {i} is out of range for {n} stages")
        take.append(j)
    return sorted(set(take))


def build(cfg: ArchConfig) -> EdgeBackbone:
    """The backbone described by ``cfg`` (freshly initialised, train mode)."""
    if not isinstance(cfg, ArchConfig):
        raise ConfigError(f"build() needs an ArchConfig, not {type(cfg).__name__}")
    return EdgeBackbone(cfg)
