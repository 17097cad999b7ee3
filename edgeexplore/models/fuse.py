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
  block is "depthwise conv on the map, then token ops";
* every Linear layer of a fused block runs on oneDNN's inner-product kernel, with the MLP's
  GELU fused into it, and is exported to ONNX as a 1×1 Conv on the map (:class:`OneDnnLinear`);
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
import torch.nn.functional as F
from torch import nn

from .attention import SparseGlobalAttention, _exporting_onnx
from .edgevit_blocks import LocalAggBlock, LsaBlock, SparseAttnBlock, SraBlock
from .layers import ConvMlp

__all__ = [
    "FusedBlock", "FusedMlp", "OneDnnLinear", "SampledAttention", "TokenLocalAgg",
    "fuse_for_inference",
]


def _onednn(x: torch.Tensor) -> bool:
    """Whether ``x`` may go through oneDNN's fused inner product: float32 on the CPU, without
    autograd (the kernel has no derivative), and not while a graph is being captured (ONNX,
    torch.export and TorchScript scripting or tracing cannot record it: they get ``F.linear``)."""
    if torch.jit.is_scripting():
        return False
    else:  # TorchScript leaves this branch uncompiled only as an explicit else
        return (x.device.type == "cpu" and x.dtype == torch.float32
                and not torch.is_grad_enabled() and torch.backends.mkldnn.is_available()
                and not torch.compiler.is_compiling() and not torch.jit.is_tracing()
                and not torch.onnx.is_in_onnx_export())


class OneDnnLinear(nn.Linear):
    """A Linear layer, optionally followed by GELU, on oneDNN's inner-product kernel where it
    can run (see :func:`_onednn`), else ``F.linear`` (and ``F.gelu``); a 1×1 Conv in ONNX.

    PyTorch's ``F.linear`` calls MKL's sgemm, whose fast paths are chosen by CPU vendor; on the
    AMD EPYC cores this project is timed on, oneDNN's kernel takes about half its time for the
    token-by-channel shapes of these blocks (e.g. 3136×48 → 192: 0.25 vs 0.57 ms), and applying
    GELU inside it saves a pass over the MLP's widest tensor. Same arithmetic, another
    summation order (about 1e-6 relative)."""

    def __init__(self, linear: nn.Linear, gelu: bool = False) -> None:
        super().__init__(linear.in_features, linear.out_features, linear.bias is not None,
                         device=linear.weight.device, dtype=linear.weight.dtype)
        self.load_state_dict(linear.state_dict())
        self.gelu = gelu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _onednn(x):
            if self.gelu:
                return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "gelu",
                                                          [], "none")
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        if x.dim() == 4 and _exporting_onnx():
            # On a (B, H, W, C) token map the ONNX graph gets a 1×1 Conv on the NCHW view:
            # ONNX Runtime runs Conv chains in its blocked NCHWc layout, folds the transposes
            # around them into its layout conversions and cancels the inverse pairs between
            # them, which made EdgeViT-XS 10% faster there than MatMuls on the tokens.
            x = F.conv2d(x.permute(0, 3, 1, 2), self.weight[:, :, None, None], self.bias)
            x = x.permute(0, 2, 3, 1)
        else:
            x = F.linear(x, self.weight, self.bias)
        return F.gelu(x) if self.gelu else x


class FusedMlp(nn.Module):
    """fc → GELU → fc on NHWC tokens, with the GELU inside the first layer."""

    def __init__(self, fc1: nn.Linear, fc2: nn.Linear) -> None:
        super().__init__()
        self.fc1 = OneDnnLinear(fc1, gelu=True)
        self.fc2 = OneDnnLinear(fc2)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(t))


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
    """Every fused EdgeViT-family block: ``x = pos(x)`` (the position encoding with its residual
    folded in), then ``x + mixer(norm1(x))`` and ``x + mlp(norm2(x))`` with norm, mixer and MLP
    on the NHWC tokens (free views of the channels-last map). A norm folded into the layer after
    it is an ``nn.Identity``."""

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
        # The residuals are added on the map rather than on the tokens: the same arithmetic in
        # eager PyTorch, but in ONNX the sum then meets the 1×1 Conv that ends the branch in
        # ONNX Runtime's NCHWc layout, which fuses it into the Conv (EdgeViT-XS ~1% faster).
        x = self.pos(x)
        x = x + self.mixer(self.norm1(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return x + self.mlp(self.norm2(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)


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


def _token_mlp(ffn: ConvMlp, bn: nn.BatchNorm2d | None = None) -> FusedMlp:
    """The conv FFN (after ``bn`` when given) as the same MLP on tokens."""
    return FusedMlp(_linear(ffn.fc1, bn), _linear(ffn.fc2))


def _onednn_linears(module: nn.Module) -> nn.Module:
    """``module`` with every plain Linear layer inside it on oneDNN (:class:`OneDnnLinear`)."""
    for name, child in module.named_children():
        if type(child) is nn.Linear:
            setattr(module, name, OneDnnLinear(child))
        else:
            _onednn_linears(child)
    return module


def _fuse_local_agg(block: LocalAggBlock) -> FusedBlock:
    agg = block.agg
    mixer = TokenLocalAgg(OneDnnLinear(_linear(agg.pw_in, block.norm1)), agg.dw,
                          OneDnnLinear(_linear(agg.pw_out)))
    return FusedBlock(_with_identity(block.cpe), nn.Identity(), mixer, nn.Identity(),
                      _token_mlp(block.ffn, block.norm2))


def _fuse_lsa(block: LsaBlock) -> FusedBlock:
    return FusedBlock(_with_identity(block.cpe), block.norm1, _onednn_linears(block.attn),
                      nn.Identity(), _token_mlp(block.ffn, block.norm2))


def _fuse_token_block(block: SparseAttnBlock | SraBlock) -> FusedBlock:
    attn = _onednn_linears(block.attn)
    pos = _with_identity(block.cpe)
    mlp = FusedMlp(block.mlp.fc1, block.mlp.fc2)
    if (isinstance(attn, SparseGlobalAttention) and attn.sample_rate > 1
            and attn.sampler in ("pick", "center")):
        return FusedBlock(pos, nn.Identity(), SampledAttention(block.norm1, attn), block.norm2,
                          mlp)
    return FusedBlock(pos, block.norm1, attn, block.norm2, mlp)


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
