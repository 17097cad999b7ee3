"""Attention operators of the EdgeViT family, on NHWC maps (B, H, W, C).

Keeping tokens as a 4-D NHWC tensor instead of (B, N, C) is the same memory layout as the
authors' token sequences, but the map's height and width travel with the tensor, which the
samplers, the propagation and the window partition need.

All of them use ``F.scaled_dot_product_attention`` with the explicit scale ``head_dim ** -0.5``:
it computes ``softmax(q k^T · scale) v`` exactly as the authors' unfused code does (up to float
rounding), fused and without materialising the attention matrix where the backend can.
"""

from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .layers import pad_to_multiple

# FX leaves must be registered in the module that calls them (torch.fx.wrap patches this
# module's globals while tracing)
torch.fx.wrap("pad_to_multiple")

SAMPLERS = ("pick", "center", "avg", "max")
PROPAGATIONS = ("deconv", "bilinear", "nearest")


def _heads_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, heads, N, d) attention with the ViT scale d^-0.5."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=q.shape[-1] ** -0.5)


class SparseGlobalAttention(nn.Module):
    """EdgeViT's global sparse attention: sample one token per r×r window, multi-head
    self-attention among the samples (q, k and v all from the samples), propagate back to full
    resolution, LayerNorm, project. With ``sample_rate`` 1 it is plain MHSA over all tokens
    followed directly by the projection (the authors' stage-4 attention).

    Maps whose sides are not multiples of r are padded at the bottom/right (edge values
    repeated, so no zeros leak into averages) and the propagated output is cropped back.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        sample_rate: int = 1,
        sampler: str = "pick",
        local_prop: str = "deconv",
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}")
        if local_prop not in PROPAGATIONS:
            raise ValueError(f"unknown local propagation {local_prop!r}")
        self.heads = heads
        self.sample_rate = sample_rate
        self.sampler = sampler
        self.local_prop = local_prop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        # None rather than absent when unused: TorchScript drops ``is not None`` branches on them
        self.prop = None
        self.prop_norm = None
        if sample_rate > 1:
            if local_prop == "deconv":
                self.prop = nn.ConvTranspose2d(
                    dim, dim, sample_rate, stride=sample_rate, groups=dim
                )
            # the authors' LayerNorm here keeps PyTorch's default eps (1e-5), unlike the blocks'
            self.prop_norm = nn.LayerNorm(dim, eps=1e-5)
        self.proj = nn.Linear(dim, dim)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        """The padded samplers on an NCHW map ('center', 'avg', 'max')."""
        r = self.sample_rate
        x = pad_to_multiple(x, r, r, mode="replicate")
        if self.sampler == "center":
            return x[:, :, r // 2::r, r // 2::r]
        if self.sampler == "avg":
            return F.avg_pool2d(x, r, r)
        return F.max_pool2d(x, r, r)

    def _propagate(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B, h, w, C) sampled tokens → (B, height, width, C) at full resolution."""
        r = self.sample_rate
        B, h, w, C = x.shape
        if self.prop is not None:
            # The depthwise transposed conv has kernel = stride = r, so its windows never
            # overlap: token (i, j) becomes bias + token · kernel over its own r×r patch. That
            # broadcast product on NHWC tokens is the same arithmetic without PyTorch's slow
            # grouped ConvTranspose2d (~7% of EdgeViT-XS on one thread) and two permutes.
            # One fused addcmul, which cost.py counts as the deconv's one multiply-add per
            # output element (fvcore would skip a plain mul).
            kernel = self.prop.weight.reshape(C, r, r).permute(1, 2, 0)
            bias = self.prop.bias
            if bias is None:
                bias = kernel.new_zeros(C)
            tokens, taps = x[:, :, None, :, None, :], kernel[None, None, :, None, :, :]
            if _exporting_onnx():
                # the ONNX exporter writes addcmul with a float32 constant, which breaks
                # float16 graphs; Mul + Add is the same arithmetic
                patches = tokens * taps + bias
            else:
                patches = torch.addcmul(bias, tokens, taps)
            x = patches.reshape(B, h * r, w * r, C)
        else:
            x = x.permute(0, 3, 1, 2)
            if self.local_prop == "bilinear":
                # a scale factor rather than a size: no shape arithmetic, same sampling grid
                x = F.interpolate(x, scale_factor=float(r), mode="bilinear", align_corners=False)
            else:
                x = F.interpolate(x, scale_factor=float(r), mode="nearest")
            x = x.permute(0, 2, 3, 1)
        return crop_tokens(x, height, width)

    def sample_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) tokens → the (B, h, w, C) samples attention runs on (all of them at
        sample rate 1)."""
        if self.prop_norm is None:
            return x
        if self.sampler == "pick":
            # the authors' AvgPool2d(kernel 1, stride r) is this strided slice; it also yields
            # ceil(H/r) rows, the size the padded samplers produce, with no padding
            return x[:, ::self.sample_rate, ::self.sample_rate]
        return self._pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    def attend(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Attention among the (B, h, w, C) samples, propagated back to (B, height, width, C)
        and projected."""
        B, h, w, C = x.shape
        qkv = self.qkv(x).reshape(B, h * w, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = _heads_attention(q, k, v).transpose(1, 2).reshape(B, h, w, C)
        if self.prop_norm is not None:
            x = self.prop_norm(self._propagate(x, height, width))
        return self.proj(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(self.sample_tokens(x), x.shape[1], x.shape[2])


def _exporting_onnx() -> bool:
    # TorchScript cannot compile torch.onnx.is_in_onnx_export; a scripted model never is
    if torch.jit.is_scripting():
        return False
    else:  # TorchScript leaves this branch uncompiled only as an explicit else
        return torch.onnx.is_in_onnx_export()


def crop_tokens(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The top-left ``height``×``width`` tokens of a (B, H, W, C) map (no graph node when it
    is that size already). An FX leaf: the branch depends on the map size."""
    if x.shape[1] == height and x.shape[2] == width:
        return x
    return x[:, :height, :width, :]


torch.fx.wrap("crop_tokens")


def _partition(x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    """(B, Hp, Wp, C) → (B · windows, wh · ww, C)."""
    B, Hp, Wp, C = x.shape
    x = x.reshape(B, Hp // wh, wh, Wp // ww, ww, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, C)


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, H, W, C) → (windows (B · n, wh · ww, C), key mask or None). Windows are clipped to
    the map; a map that is not a multiple of them is zero-padded and the mask (True = real
    token) hides the padding from the keys. An FX leaf: the layout depends on the size."""
    B, H, W = x.shape[0], x.shape[1], x.shape[2]
    wh, ww = min(window, H), min(window, W)
    ph, pw = (wh - H % wh) % wh, (ww - W % ww) % ww
    if ph == 0 and pw == 0:
        return _partition(x, wh, ww), None
    x = F.pad(x, [0, 0, 0, pw, 0, ph])
    valid = F.pad(x.new_ones(1, H, W, 1), [0, 0, 0, pw, 0, ph])
    valid = _partition(valid, wh, ww).reshape(1, -1, 1, 1, wh * ww) > 0.5
    mask = valid.expand(B, -1, 1, 1, wh * ww).reshape(-1, 1, 1, wh * ww)
    return _partition(x, wh, ww), mask


def window_merge(x: torch.Tensor, height: int, width: int, window: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B · n, wh · ww, C) → (B, height, width, C)."""
    wh, ww = min(window, height), min(window, width)
    nh, nw = (height + wh - 1) // wh, (width + ww - 1) // ww
    C = x.shape[-1]
    x = x.reshape(-1, nh, nw, wh, ww, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, nh * wh, nw * ww, C)
    return crop_tokens(x, height, width)


torch.fx.wrap("window_partition")
torch.fx.wrap("window_merge")


class WindowAttention(nn.Module):
    """Twins' locally-grouped self-attention (LSA): multi-head attention inside non-overlapping
    windows. Windows are ``window``×``window`` (clipped to the map when the map is smaller);
    maps are zero-padded to a multiple of the window and padded tokens are masked out as keys,
    so the result never depends on the padding."""

    def __init__(self, dim: int, heads: int, window: int = 7, qkv_bias: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.window = window
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W, C = x.shape[1], x.shape[2], x.shape[3]
        tokens, mask = window_partition(x, self.window)
        n, L = tokens.shape[0], tokens.shape[1]
        qkv = self.qkv(tokens).reshape(n, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = _heads_attention(q, k, v, mask).transpose(1, 2).reshape(n, L, C)
        return self.proj(window_merge(out, H, W, self.window))


class SpatialReductionAttention(nn.Module):
    """PVT's spatial-reduction attention: queries from every token; keys and values from the
    map reduced by a conv with kernel = stride = r, then LayerNorm. Maps not divisible by r are
    zero-padded before the reduction (a conv over a partial window, as a padded conv would)."""

    def __init__(self, dim: int, heads: int, sample_rate: int = 1, qkv_bias: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.sample_rate = sample_rate
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.reduce = None
        self.reduce_norm = None
        if sample_rate > 1:
            self.reduce = nn.Conv2d(dim, dim, sample_rate, stride=sample_rate)
            self.reduce_norm = nn.LayerNorm(dim, eps=1e-5)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        d = C // self.heads
        q = self.q(x).reshape(B, H * W, self.heads, d).transpose(1, 2)
        if self.reduce is not None and self.reduce_norm is not None:
            r = self.sample_rate
            kv = self.reduce(pad_to_multiple(x.permute(0, 3, 1, 2), r, r)).permute(0, 2, 3, 1)
            kv = self.reduce_norm(kv)
        else:
            kv = x
        kv = self.kv(kv).reshape(B, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)
        out = _heads_attention(q, k, v).transpose(1, 2).reshape(B, H, W, C)
        return self.proj(out)
