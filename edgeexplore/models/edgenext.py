"""EdgeNeXt blocks (Maaz et al. 2022): the conv encoder and the SDTA block.

Both map an NCHW tensor to one of the same shape, so they drop into any stage of the pyramid.
The arithmetic follows the authors' code op for op (and therefore timm's ``edgenext_*``, which
is numerically identical to it): LayerNorms with eps 1e-6 over channels-last tokens, layer scale
initialised to 1e-6, the split-scale depthwise cascade, the Fourier position encoding and the
cross-covariance (transposed) attention with a learnable per-head temperature.

Differences that do not change any output:

* the split uses explicit slices instead of ``torch.split`` (which broke ONNX Runtime export)
  or ``chunk`` (which silently returns fewer groups for some widths);
* the Fourier encoding is computed once per spatial size (batch 1) and broadcast over the
  batch instead of once per image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .layers import LayerNorm2d, TokenMlp, drop_path_or_identity

#: The authors' LayerNorm epsilon in every EdgeNeXt norm.
LN_EPS = 1e-6

__all__ = [
    "XCA",
    "ConvEncoder",
    "FourierPositionEncoding",
    "LayerNorm2d",
    "NormConv",
    "SDTABlock",
    "split_sizes",
]


def _layer_scale(dim: int, init: float) -> nn.Parameter | None:
    # The authors create the parameter only when the init value is positive; keeping that rule
    # keeps parameter counts and state dicts identical.
    return nn.Parameter(init * torch.ones(dim)) if init > 0 else None


class ConvEncoder(nn.Module):
    """EdgeNeXt conv encoder: ``x + γ·MLP(LN(dw_k×k(x)))`` (inverted bottleneck, ConvNeXt-style)."""

    def __init__(
        self,
        dim: int,
        kernel_size: int = 7,
        mlp_ratio: float = 4.0,
        layer_scale: float = 1e-6,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(
                f"the conv encoder kernel must be odd and positive, not {kernel_size}"
            )
        self.conv_dw = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = TokenMlp(dim, int(mlp_ratio * dim))
        self.gamma = _layer_scale(dim, layer_scale)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        x = self.conv_dw(x).permute(0, 2, 3, 1)
        x = self.mlp(self.norm(x))
        if self.gamma is not None:
            x = self.gamma * x
        return shortcut + self.drop_path(x.permute(0, 3, 1, 2))


class FourierPositionEncoding(nn.Module):
    """DETR-style sine/cosine encoding of normalised (y, x) positions, projected by a 1×1 conv.

    Positions are 1..H (1..W) divided by H + 1e-6 (W + 1e-6) and scaled to 2π, the same
    numbers the authors get from the cumulative sum of an all-ones mask.
    """

    def __init__(self, dim: int, hidden: int = 32, temperature: float = 10000.0) -> None:
        super().__init__()
        self.proj = nn.Conv2d(2 * hidden, dim, kernel_size=1)
        self.hidden = hidden
        self.temperature = temperature

    @staticmethod
    def _sin_cos(pos: Tensor) -> Tensor:
        # sin of the even features, cos of the odd ones, interleaved again; a reshape instead of
        # step-2 slices keeps the ONNX graph free of strided Slice ops
        pairs = pos.reshape(pos.shape[0], -1, 2)
        return torch.stack((pairs[..., 0].sin(), pairs[..., 1].cos()), dim=2).flatten(1)

    def forward(self, height: int, width: int) -> Tensor:
        """The (1, dim, H, W) encoding of an H×W map."""
        dev = self.proj.weight.device
        eps, scale = 1e-6, 2 * math.pi
        y = torch.arange(1, height + 1, device=dev, dtype=torch.float32)
        x = torch.arange(1, width + 1, device=dev, dtype=torch.float32)
        y = y / (y[-1:] + eps) * scale
        x = x / (x[-1:] + eps) * scale
        idx = torch.arange(self.hidden, device=dev, dtype=torch.float32)
        dim_t = self.temperature ** (2 * torch.div(idx, 2, rounding_mode="floor") / self.hidden)
        pos_y = y[:, None] / dim_t  # (H, hidden)
        pos_x = x[:, None] / dim_t  # (W, hidden)
        pos_y = self._sin_cos(pos_y)
        pos_x = self._sin_cos(pos_x)
        grid = torch.cat(
            (
                pos_y[:, None, :].expand(height, width, self.hidden),
                pos_x[None, :, :].expand(height, width, self.hidden),
            ),
            dim=2,
        )
        grid = grid.permute(2, 0, 1).unsqueeze(0).to(self.proj.weight.dtype)
        return self.proj(grid)


class XCA(nn.Module):
    """Cross-covariance attention: a (C/h × C/h) attention map per head over the channels.

    q and k are L2-normalised along the tokens, and their product is scaled by a learnable
    per-head temperature instead of 1/sqrt(d); cost is linear in the number of tokens.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"SDTA width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 4, 1).unbind(0)  # each (B, heads, C/h, N)
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        attn = (attn * self.temperature).softmax(dim=-1)
        x = (attn @ v).permute(0, 3, 1, 2).reshape(b, n, c)
        return self.proj(x)


def split_sizes(dim: int, scales: int) -> list[int]:
    """Channel groups of an SDTA block: ``scales - 1`` groups of ceil(dim/scales), then the rest.

    The authors split with ``torch.split(x, ceil(dim/scales))``; for some widths that yields
    fewer than ``scales`` groups and their forward fails, so such widths are rejected here.
    """
    if scales < 2:
        raise ConfigError(f"SDTA needs at least 2 split scales, not {scales}")
    width = math.ceil(dim / scales)
    last = dim - (scales - 1) * width
    if last < 1:
        raise ConfigError(
            f"SDTA cannot split {dim} channels into {scales} scales of {width} "
            "(the last group would be empty); choose another width or number of scales"
        )
    return [width] * (scales - 1) + [last]


class SDTABlock(nn.Module):
    """Split depth-wise transpose attention (SDTA) encoder.

    1. split the channels into ``scales`` groups; group 0 → dw3×3, group i → dw3×3(previous
       output + group i), the last group passes unchanged; concatenate;
    2. optional Fourier position encoding;
    3. ``x = x + γ_xca · XCA(LN(x))``;
    4. return ``input + γ · MLP(LN(x))`` — the MLP residual goes to the block's input.
    """

    def __init__(
        self,
        dim: int,
        scales: int = 2,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        use_pos_emb: bool = True,
        layer_scale: float = 1e-6,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.sizes = split_sizes(dim, scales)
        self.convs = nn.ModuleList(nn.Conv2d(w, w, 3, padding=1, groups=w) for w in self.sizes[:-1])
        self.pos_embed = FourierPositionEncoding(dim) if use_pos_emb else None
        self.norm_xca = nn.LayerNorm(dim, eps=LN_EPS)
        self.gamma_xca = _layer_scale(dim, layer_scale)
        self.xca = XCA(dim, num_heads, qkv_bias)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = TokenMlp(dim, int(mlp_ratio * dim))
        self.gamma = _layer_scale(dim, layer_scale)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        b, c, h, w = x.shape
        outs = []
        start = 0
        sp = x
        for i, conv in enumerate(self.convs):
            group = x[:, start : start + self.sizes[i]]
            start += self.sizes[i]
            sp = conv(group if i == 0 else sp + group)
            outs.append(sp)
        outs.append(x[:, start:])
        x = torch.cat(outs, dim=1)

        x = x.reshape(b, c, h * w).transpose(1, 2)  # (B, N, C)
        if self.pos_embed is not None:
            x = x + self.pos_embed(h, w).reshape(1, c, h * w).transpose(1, 2)
        attn = self.xca(self.norm_xca(x))
        if self.gamma_xca is not None:
            attn = self.gamma_xca * attn
        x = x + self.drop_path(attn)

        x = self.mlp(self.norm(x))
        if self.gamma is not None:
            x = self.gamma * x
        x = x.transpose(1, 2).reshape(b, c, h, w)
        return shortcut + self.drop_path(x)


# -- registration: the "edgenext" block kind and macro layout ---------------------------------


def init_edgenext_weights(module: nn.Module) -> None:
    """The authors' init: conv and Linear weights truncated normal (std .02), zero biases,
    LayerNorm weight 1 / bias 0. Use with ``Module.apply``."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class NormConv(nn.Module):
    """EdgeNeXt downsampler: channel LayerNorm (eps 1e-6), then a strided patchify conv."""

    def __init__(self, in_ch: int, out_ch: int, patch: int) -> None:
        super().__init__()
        self.norm = LayerNorm2d(in_ch, eps=LN_EPS)
        self.conv = nn.Conv2d(in_ch, out_ch, patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.norm(x))
