"""Inference-time re-parameterisation: the deployable form of a backbone.

:func:`fuse_for_inference` returns a copy in eval mode that computes the same function (to float
rounding, about 1e-6) with fewer and cheaper operations:

* the conv position encoding ``x + dwconv(x)`` becomes one depthwise conv: the identity is a
  kernel whose centre tap is 1, so it is added to each channel's centre tap;
* an eval BatchNorm in front of a 1×1 conv (LocalAgg's ``norm1`` before ``pw_in``, the FFN's
  ``norm2`` before ``fc1``) is a per-channel affine map, folded into that conv's weight and bias;
* global sparse attention whose sampler picks tokens (``pick``, ``center``) norms the picked
  tokens only: LayerNorm acts on each token alone, so norming the samples equals sampling the
  normed map, at 1/r² of the cost;
* the 1×1 convs of the LocalAgg and LSA blocks run as Linear layers on NHWC tokens, so every
  block is "depthwise conv on the map, then token ops", and
* the whole network runs in channels-last memory format: a map's NHWC view is then contiguous,
  and the switches between maps (depthwise convs) and tokens (LayerNorm, Linear, attention) are
  free views instead of copies.

Blocks are replaced by exact type; any other module (GCC, EdgeNeXt, a plug-in block) is kept as
it is, so fusing never changes what a model computes. The fused copy is for inference only: its
blocks have other parameter names (checkpoints are saved from and loaded into the model as
built, which this leaves untouched) and no stochastic depth.

The latency backends time the fused model and ``edgeexplore export`` writes it: the latency of
an architecture is the latency of what would be deployed.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .attention import SparseGlobalAttention
from .edgevit_blocks import LocalAggBlock, LsaBlock, SparseAttnBlock, SraBlock
from .layers import ConvMlp, TokenMlp

__all__ = ["FusedBlock", "SampledAttention", "TokenLocalAgg", "fuse_for_inference"]


class TokenLocalAgg(nn.Module):
    """LocalAgg on NHWC tokens: Linear → depthwise conv (on the NCHW view) → Linear."""

    def __init__(self, pw_in: nn.Linear, dw: nn.Conv2d, pw_out: nn.Linear) -> None:
        super().__init__()
        self.pw_in = pw_in
        self.dw = dw
        self.pw_out = pw_out

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        a = self.dw(self.pw_in(t).permute(0, 3, 1, 2))
        return self.pw_out(a.permute(0, 2, 3, 1))


class SampledAttention(nn.Module):
    """Global sparse attention with its pre-norm applied to the sampled tokens only (for the
    samplers that pick tokens, where that is exact)."""

    def __init__(self, norm: nn.LayerNorm, attn: SparseGlobalAttention) -> None:
        super().__init__()
        self.norm = norm
        self.attn = attn

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.attn.attend(self.norm(self.attn.sample_tokens(t)), t.shape[1], t.shape[2])


class FusedBlock(nn.Module):
    """Every fused EdgeViT-family block: ``t = pos(x)`` (the position encoding with its residual
    folded in), then on NHWC tokens ``t + mixer(norm1(t))`` and ``t + mlp(norm2(t))``. A norm
    folded into the layer after it is an ``nn.Identity``."""

    def __init__(
        self, pos: nn.Conv2d, norm1: nn.Module, mixer: nn.Module, norm2: nn.Module,
        mlp: nn.Module,
    ) -> None:
        super().__init__()
        self.pos = pos
        self.norm1 = norm1
        self.mixer = mixer
        self.norm2 = norm2
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.pos(x).permute(0, 2, 3, 1)
        t = t + self.mixer(self.norm1(t))
        t = t + self.mlp(self.norm2(t))
        return t.permute(0, 3, 1, 2)


# -- folding -------------------------------------------------------------------------------------
# The arithmetic runs in float64 and is cast back, so folding adds no more than one rounding.


def _with_identity(conv: nn.Conv2d) -> nn.Conv2d:
    """``x + conv(x)`` as one conv (a depthwise, odd-kernel, same-padding conv)."""
    fused = copy.deepcopy(conv)
    kh, kw = conv.kernel_size
    with torch.no_grad():
        fused.weight[:, 0, kh // 2, kw // 2] += 1.0
    return fused


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of an eval BatchNorm: ``bn(x) = scale · x + shift`` per channel."""
    var, mean = bn.running_var.double(), bn.running_mean.double()
    weight = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    bias = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = weight / torch.sqrt(var + bn.eps)
    return scale, bias - mean * scale


def _linear(conv: nn.Conv2d, bn: nn.BatchNorm2d | None = None) -> nn.Linear:
    """A 1×1 conv (after ``bn`` when given) as a Linear layer on channels-last tokens."""
    w = conv.weight.detach().double().flatten(1)
    b = conv.bias.detach().double() if conv.bias is not None else w.new_zeros(w.shape[0])
    if bn is not None:
        scale, shift = _bn_affine(bn)
        w, b = w * scale, b + w @ shift
    linear = nn.Linear(w.shape[1], w.shape[0], device=conv.weight.device,
                       dtype=conv.weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(w)
        linear.bias.copy_(b)
    return linear


def _token_mlp(ffn: ConvMlp, bn: nn.BatchNorm2d | None = None) -> TokenMlp:
    """The conv FFN (after ``bn`` when given) as the same MLP on tokens."""
    mlp = TokenMlp(ffn.fc1.in_channels, ffn.fc1.out_channels)
    mlp.fc1, mlp.act, mlp.fc2 = _linear(ffn.fc1, bn), ffn.act, _linear(ffn.fc2)
    return mlp


def _fuse_local_agg(block: LocalAggBlock) -> FusedBlock:
    agg = block.agg
    mixer = TokenLocalAgg(_linear(agg.pw_in, block.norm1), agg.dw, _linear(agg.pw_out))
    return FusedBlock(_with_identity(block.cpe), nn.Identity(), mixer, nn.Identity(),
                      _token_mlp(block.ffn, block.norm2))


def _fuse_lsa(block: LsaBlock) -> FusedBlock:
    return FusedBlock(_with_identity(block.cpe), block.norm1, block.attn, nn.Identity(),
                      _token_mlp(block.ffn, block.norm2))


def _fuse_token_block(block: SparseAttnBlock | SraBlock) -> FusedBlock:
    attn = block.attn
    pos = _with_identity(block.cpe)
    if (isinstance(attn, SparseGlobalAttention) and attn.sample_rate > 1
            and attn.sampler in ("pick", "center")):
        return FusedBlock(pos, nn.Identity(), SampledAttention(block.norm1, attn), block.norm2,
                          block.mlp)
    return FusedBlock(pos, block.norm1, attn, block.norm2, block.mlp)


_FUSERS = {
    LocalAggBlock: _fuse_local_agg,
    LsaBlock: _fuse_lsa,
    SparseAttnBlock: _fuse_token_block,
    SraBlock: _fuse_token_block,
}


def _replace_blocks(module: nn.Module) -> nn.Module:
    fuser = _FUSERS.get(type(module))
    if fuser is not None:
        return fuser(module)
    for name, child in module.named_children():
        setattr(module, name, _replace_blocks(child))
    return module


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """The deployable form of ``model``: a fused copy in eval mode, in channels-last format (see
    the module docstring); ``model`` itself is not changed. Any module may be passed: one with
    no block to fuse (the authors' EdgeViT, an EdgeNeXt, a loaded graph) is returned as it is."""
    if not any(type(m) in _FUSERS for m in model.modules()):
        return model
    with torch.no_grad():
        fused = _replace_blocks(copy.deepcopy(model).eval())
    return fused.to(memory_format=torch.channels_last)
