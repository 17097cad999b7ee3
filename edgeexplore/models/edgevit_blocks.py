"""EdgeViT's blocks and the paper's ablation variants (declared as kinds in
:mod:`edgeexplore.kinds.edgevit`).

Every block maps an NCHW map to one of the same shape.

* ``lgl`` → :class:`LGLBlock`: a local half (:class:`LocalAggBlock`, or :class:`LsaBlock` when
  ``local_agg`` is "lsa") followed by a global half (:class:`SparseAttnBlock`). With sample rate 1
  the local half is absent and the global half is plain MHSA, like the authors' stage 4.
* ``sra`` → :class:`SraBlock`: PVT's spatial-reduction attention block (the paper's "no local
  aggregation" row).
* ``conv`` → :class:`LocalAggBlock` alone: position encoding, LocalAgg and conv FFN.

Both halves of an LGL block share one stochastic-depth rate, as in the authors' code.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import SparseGlobalAttention, SpatialReductionAttention, WindowAttention
from .layers import ConvMlp, TokenMlp, drop_path_or_identity

# The authors use LayerNorm(eps=1e-6) inside the token halves; the stem/downsample norms and the
# norm after local propagation keep PyTorch's 1e-5.
TOKEN_NORM_EPS = 1e-6


class LocalAgg(nn.Module):
    """pw 1×1 → depthwise k×k → pw 1×1, no activation in between (the authors' LocalAgg op)."""

    def __init__(self, dim: int, kernel: int = 5) -> None:
        super().__init__()
        self.pw_in = nn.Conv2d(dim, dim, 1)
        self.dw = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.pw_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw_out(self.dw(self.pw_in(x)))


class LocalAggBlock(nn.Module):
    """``x + cpe(x)``, ``x + LocalAgg(BN(x))``, ``x + FFN(BN(x))`` on NCHW maps."""

    def __init__(self, dim: int, hidden: int, kernel: int = 5, drop_path: float = 0.0) -> None:
        super().__init__()
        self.cpe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.agg = LocalAgg(dim, kernel)
        self.norm2 = nn.BatchNorm2d(dim)
        self.ffn = ConvMlp(dim, hidden)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.cpe(x)
        x = x + self.drop_path(self.agg(self.norm1(x)))
        return x + self.drop_path(self.ffn(self.norm2(x)))


class LsaBlock(nn.Module):
    """The LocalAgg half with Twins' window attention in place of the pw-dw-pw convs:
    ``x + cpe(x)``, ``x + LSA(LN(x))``, ``x + FFN(BN(x))``. The pre-attention norm is a
    LayerNorm, as in Twins (attention over tokens), the FFN keeps LocalAgg's BatchNorm."""

    def __init__(
        self, dim: int, heads: int, hidden: int, window: int = 7, qkv_bias: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.cpe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=TOKEN_NORM_EPS)
        self.attn = WindowAttention(dim, heads, window, qkv_bias)
        self.norm2 = nn.BatchNorm2d(dim)
        self.ffn = ConvMlp(dim, hidden)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.cpe(x)
        t = x.permute(0, 2, 3, 1)
        t = t + self.drop_path(self.attn(self.norm1(t)))
        x = t.permute(0, 3, 1, 2)
        return x + self.drop_path(self.ffn(self.norm2(x)))


class _TokenBlock(nn.Module):
    """``x + cpe(x)``, then on NHWC tokens ``t + attn(LN(t))`` and ``t + MLP(LN(t))``."""

    def __init__(self, dim: int, hidden: int, drop_path: float) -> None:
        super().__init__()
        self.cpe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=TOKEN_NORM_EPS)
        self.norm2 = nn.LayerNorm(dim, eps=TOKEN_NORM_EPS)
        self.mlp = TokenMlp(dim, hidden)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.cpe(x)
        t = x.permute(0, 2, 3, 1)
        t = t + self.drop_path(self.attn(self.norm1(t)))
        t = t + self.drop_path(self.mlp(self.norm2(t)))
        return t.permute(0, 3, 1, 2)


class SparseAttnBlock(_TokenBlock):
    """The global half of an LGL block (the authors' ``SelfAttn``): position encoding, global
    sparse attention with local propagation, token MLP."""

    def __init__(
        self, dim: int, heads: int, hidden: int, sample_rate: int = 1, sampler: str = "pick",
        local_prop: str = "deconv", qkv_bias: bool = True, drop_path: float = 0.0,
    ) -> None:
        super().__init__(dim, hidden, drop_path)
        self.attn = SparseGlobalAttention(dim, heads, sample_rate, sampler, local_prop, qkv_bias)


class SraBlock(_TokenBlock):
    """PVT-style block: spatial-reduction attention with full-resolution queries, then the token
    MLP. It keeps the LGL block's depthwise-conv position encoding in front, because PVT's own
    absolute position embedding would tie the network to one input size."""

    def __init__(
        self, dim: int, heads: int, hidden: int, sample_rate: int = 1, qkv_bias: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__(dim, hidden, drop_path)
        self.attn = SpatialReductionAttention(dim, heads, sample_rate, qkv_bias)


class LGLBlock(nn.Module):
    """Local-global-local block: ``global_attn(local_agg(x))``; ``local_agg`` is an Identity
    when the sample rate is 1 (the authors' stage-4 block has no local half)."""

    def __init__(self, local_agg: nn.Module | None, global_attn: nn.Module) -> None:
        super().__init__()
        self.local_agg = local_agg if local_agg is not None else nn.Identity()
        self.global_attn = global_attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.global_attn(self.local_agg(x))
