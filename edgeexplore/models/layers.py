"""Small layers shared by the blocks: channel LayerNorm for NCHW maps, MLPs, padding helpers."""

from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from torch import nn

__all__ = [
    "ConvMlp",
    "ConvNorm",
    "DropPath",
    "LayerNorm2d",
    "TokenMlp",
    "drop_path_or_identity",
    "init_linear_and_norm",
    "pad_to_multiple",
]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (the authors flatten to tokens and back)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNorm(nn.Module):
    """Strided patchify conv (with bias) followed by a channel LayerNorm: EdgeViT's stem and
    downsamplers (the authors' ``PatchEmbed``)."""

    def __init__(self, in_ch: int, out_ch: int, patch: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, patch, stride=patch, bias=True)
        self.norm = LayerNorm2d(out_ch, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class TokenMlp(nn.Module):
    """fc → GELU → fc on (..., C) tokens."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvMlp(nn.Module):
    """1×1 conv → GELU → 1×1 conv on NCHW maps (the LocalAgg feed-forward)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def drop_path_or_identity(rate: float) -> nn.Module:
    # An Identity keeps the eval graph (and ONNX export) free of no-op nodes.
    return DropPath(rate) if rate > 0.0 else nn.Identity()


def init_linear_and_norm(module: nn.Module) -> None:
    """The authors' init: Linear weights truncated normal (std .02) with zero bias, LayerNorm
    weight 1 / bias 0; convs and BatchNorm keep PyTorch's defaults. Use with ``Module.apply``."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def pad_to_multiple(
    x: torch.Tensor, multiple_h: int, multiple_w: int, mode: str = "constant"
) -> torch.Tensor:
    """Pad the last two dims of an NCHW map at the bottom/right up to multiples (no-op if they
    already are), with zeros (``constant``) or repeated edge values (``replicate``).

    The branch depends on the map size, so the function is an FX leaf (``torch.fx.wrap``): a
    traced graph decides at run time; TorchScript scripts it as it is; an ONNX trace sees
    Python ints and records a fixed pad (or none)."""
    h, w = x.shape[-2], x.shape[-1]
    ph = (multiple_h - h % multiple_h) % multiple_h
    pw = (multiple_w - w % multiple_w) % multiple_w
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, [0, pw, 0, ph], mode=mode)


torch.fx.wrap("pad_to_multiple")
