"""Macro layouts (stem, downsamplers, norms around the head) registered by name.

``edgevit``: 4×4/4 conv + LayerNorm stem; 2×2/2 conv + LayerNorm downsamplers (the authors'
``PatchEmbed``, norm eps 1e-5); BatchNorm2d on the last map, then global average pooling and the
Linear classifier (no norm after pooling).
"""

from __future__ import annotations

from torch import nn

from ..config import ArchConfig
from .layers import ConvNorm
from .registry import Macro, register_macro


@register_macro("edgevit")
def edgevit_macro(arch: ArchConfig) -> Macro:
    w = arch.widths
    return Macro(
        stem=ConvNorm(arch.in_chans, w[0], 4),
        downsamplers=[ConvNorm(w[i - 1], w[i], 2) for i in range(1, 4)],
        final_norm=nn.BatchNorm2d(w[3]),
        head_norm=nn.Identity(),
    )
