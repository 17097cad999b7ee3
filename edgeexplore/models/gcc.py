"""EdgeFormer / ParC-Net global circular convolution (GCC) block, ``gcc_ca`` variant.

A GCC is a depthwise convolution whose kernel spans a whole axis and wraps around:
``out[i] = Σ_k K[k] · x[(i + k) mod H]`` along H (or W). Its learned "meta" kernel and a 1-D
position embedding have a fixed length (the stage's map side at the nominal input resolution)
and are resized bilinearly (align_corners=True) to the side of the map actually seen. The
authors only handle square maps (one size for both axes); here each axis is resized to its own
side, so H ≠ W works and the square case is unchanged.

The circular conv is a concatenation (the map followed by its first side-1 rows or columns)
and a valid depthwise ``conv2d`` with the resized kernel: O(C·H·W·(H+W)) like the authors',
counted exactly by fvcore, and exportable to ONNX (Concat + Resize + Conv).
"""

from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .layers import drop_path_or_identity


def resize_along(t: Tensor, size: int, axis_h: bool) -> Tensor:
    """A (N, C, K, 1) (``axis_h``) or (N, C, 1, K) kernel or embedding resized to ``size`` taps,
    bilinear with align_corners=True as the authors do; unchanged at its own length. An FX leaf
    (``torch.fx.wrap``): whether to resize depends on the map seen at run time."""
    length = t.shape[2] if axis_h else t.shape[3]
    if size == length:
        return t
    shape = [size, 1] if axis_h else [1, size]
    out = F.interpolate(t, size=shape, mode="bilinear", align_corners=True)
    # the explicit reshape gives the ONNX exporter a static kernel shape for Conv
    return out.reshape(t.shape[0], t.shape[1], shape[0], shape[1])


torch.fx.wrap("resize_along")


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    h, w = value
    return (int(h), int(w))


class CircularConv(nn.Module):
    """Depthwise global circular convolution along one axis, with its position embedding.

    Parameters keep the authors' shapes: kernel (C, 1, K, 1) for H or (C, 1, 1, K) for W, and
    position embedding (1, C, K, 1) or (1, C, 1, K). The embedding is *not* added here (the
    block adds it before a BatchNorm for the first conv of each half); :meth:`embedding` gives
    it at the current size.
    """

    def __init__(self, channels: int, axis: str, meta_size: int, bias: bool, use_pe: bool) -> None:
        super().__init__()
        if axis not in ("h", "w"):
            raise ValueError(f"axis must be 'h' or 'w', not {axis!r}")
        if meta_size < 1:
            raise ConfigError(f"the GCC meta kernel needs at least one tap, not {meta_size}")
        self.axis = axis
        self.channels = channels
        self.meta_size = meta_size
        shape = (meta_size, 1) if axis == "h" else (1, meta_size)
        # Same init as the authors: a depthwise Conv2d's default weight init, and N(0, 1) for
        # the bias and the position embedding.
        self.weight = nn.Parameter(
            nn.Conv2d(channels, channels, shape, groups=channels).weight.data
        )
        self.bias = nn.Parameter(torch.randn(channels)) if bias else None
        self.pe = nn.Parameter(torch.randn(1, channels, *shape)) if use_pe else None

    def add_embedding(self, x: Tensor) -> Tensor:
        """``x`` plus the position embedding resized to ``x``'s side along this conv's axis
        (broadcast over the other axis); ``x`` itself without an embedding."""
        if self.pe is None:
            return x
        h_axis = self.axis == "h"
        return x + resize_along(self.pe, x.shape[2] if h_axis else x.shape[3], h_axis)

    def forward(self, x: Tensor) -> Tensor:
        h_axis = self.axis == "h"
        dim = 2 if h_axis else 3
        size = x.shape[dim]
        kernel = resize_along(self.weight, size, h_axis)
        wrapped = torch.cat((x, x.narrow(dim, 0, size - 1)), dim=dim)
        return F.conv2d(wrapped, kernel, self.bias, groups=self.channels)

    def extra_repr(self) -> str:
        pe = self.pe is not None
        return f"{self.channels}, axis={self.axis}, meta_size={self.meta_size}, pe={pe}"


class SqueezeExcite(nn.Module):
    """The authors' channel attention: GAP → 1×1 → BN → Hardswish → 1×1 → BN → Hardsigmoid."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act = nn.Hardswish()
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: Tensor) -> Tensor:
        y = x.mean((2, 3), keepdim=True)
        y = self.gate(self.bn2(self.fc2(self.act(self.bn1(self.fc1(y))))))
        return x * y


class ConvFFN(nn.Module):
    """BN → 1×1 → Hardswish → dropout → 1×1 → dropout."""

    def __init__(self, channels: int, hidden: int, ffn_dropout: float = 0.0, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = nn.Hardswish()
        self.drop1 = nn.Dropout(ffn_dropout)
        self.fc2 = nn.Conv2d(hidden, channels, 1)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(self.norm(x))))))


class GCCBlock(nn.Module):
    """EdgeFormer ``gcc_ca`` block over ``dim`` channels (two halves of ``dim // 2``).

    * half 1: ``+pe`` → BN → GCC-H → ``+pe`` → GCC-W, plus its residual;
    * half 2: ``+pe`` → BN → GCC-W → ``+pe`` → GCC-H, plus its residual;
    * then ``x + SE(FFN(x))`` over all channels.

    ``meta_kernel`` is the meta kernel length, one int for both axes or (K_H, K_W); it should
    be the stage's map size at the nominal input resolution.
    """

    def __init__(
        self,
        dim: int,
        meta_kernel: int | tuple[int, int],
        ffn_dim: int | None = None,
        use_pe: bool = True,
        bias: bool = False,
        se_reduction: int = 16,
        ffn_dropout: float = 0.0,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % 2:
            raise ConfigError(f"a GCC block splits its channels in half; width {dim} is odd")
        kh, kw = _pair(meta_kernel)
        half = dim // 2
        self.dim = dim
        self.norm1 = nn.BatchNorm2d(half)
        self.norm2 = nn.BatchNorm2d(half)
        self.gcc1_h = CircularConv(half, "h", kh, bias, use_pe)
        self.gcc1_w = CircularConv(half, "w", kw, bias, use_pe)
        self.gcc2_w = CircularConv(half, "w", kw, bias, use_pe)
        self.gcc2_h = CircularConv(half, "h", kh, bias, use_pe)
        self.ffn = ConvFFN(dim, ffn_dim or 2 * dim, ffn_dropout, dropout)
        self.se = SqueezeExcite(dim, se_reduction)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        half = self.dim // 2
        x1, x2 = x[:, :half], x[:, half:]
        # each half: +pe → BN → first conv → +pe → second conv (the axes swap in half 2)
        y1 = self.gcc1_h(self.norm1(self.gcc1_h.add_embedding(x1)))
        y1 = self.gcc1_w(self.gcc1_w.add_embedding(y1))
        y2 = self.gcc2_w(self.norm2(self.gcc2_w.add_embedding(x2)))
        y2 = self.gcc2_h(self.gcc2_h.add_embedding(y2))
        x = torch.cat((x1 + self.drop_path(y1), x2 + self.drop_path(y2)), dim=1)
        return x + self.drop_path(self.se(self.ffn(x)))
