"""EdgeViT's block kinds (``lgl``, and the paper's ablation variants ``sra`` and ``conv``) and
its macro layout, declared next to their builders; the modules are in
:mod:`edgeexplore.models.edgevit_blocks` and imported only when a model is built.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING

from ._declare import Option, When, block_kind, macro_layout

if TYPE_CHECKING:
    from torch import nn

    from ..config import ArchConfig
    from ..models.registry import Macro, StageContext

_AGG_KERNEL = Option(5, (3, 5), help="LocalAgg depthwise kernel: 5 (official) or 3 (paper's "
                     "supplementary)")

# At sample rate 1 an LGL block is plain MHSA + MLP: none of its options changes anything.
_LGL_OPTIONS = {
    "local_agg": Option(
        "conv", ("conv", "lsa"), sampled_only=True,
        help="local aggregation: `conv` (LocalAgg: pw-dw-pw convs) or `lsa` (Twins window "
        "attention)",
    ),
    # LSA replaces the depthwise conv, so its kernel is irrelevant there, and vice versa
    "agg_kernel": dataclasses.replace(_AGG_KERNEL, sampled_only=True,
                                      when=When("local_agg", ("conv",))),
    "window": Option(7, minimum=2, sampled_only=True, when=When("local_agg", ("lsa",)),
                     help="LSA window side (maps are padded to a multiple of it)"),
    "sampler": Option(
        "pick", ("pick", "center", "avg", "max"), sampled_only=True,
        help="global sparse attention sampler: `pick` (official top-left of each r×r window), "
        "`center`, `avg` or `max` pooling",
    ),
    "local_prop": Option(
        "deconv", ("deconv", "bilinear", "nearest"), sampled_only=True,
        help="local propagation: `deconv` (official transposed depthwise conv), `bilinear` or "
        "`nearest` upsampling",
    ),
}


def _warn_if_padded(ctx: StageContext) -> None:
    # Search spaces refuse such rates; a hand-written or older stored config may still have one,
    # and it builds (the blocks pad the map), but its cost is not the network it names.
    (h, w), r = ctx.nominal_size, ctx.stage.sample_rate
    if r > 1 and (h % r or w % r):
        warnings.warn(
            f"stage {ctx.index + 1}: sample rate {r} does not divide its {h}×{w} feature map at "
            f"{ctx.arch.resolution[0]}×{ctx.arch.resolution[1]}; the {ctx.stage.block} blocks "
            "pad it",
            stacklevel=3,
        )


def _initialised(blocks: list[nn.Module]) -> list[nn.Module]:
    from ..models.layers import init_linear_and_norm

    for b in blocks:
        b.apply(init_linear_and_norm)
    return blocks


@block_kind(
    "lgl",
    help="EdgeViT local-global-local block (official default); with sample rate 1 it is plain "
    "MHSA + MLP",
    options=_LGL_OPTIONS,
    samples_rate=True,
    export="ONNX as is; a map the sample rate does not divide is padded (with a warning)",
)
def build_lgl_stage(ctx: StageContext) -> list[nn.Module]:
    from ..models.edgevit_blocks import LGLBlock, LocalAggBlock, LsaBlock, SparseAttnBlock

    _warn_if_padded(ctx)
    st, o = ctx.stage, ctx.stage.opts
    dim, qkv_bias = st.width, ctx.arch.qkv_bias
    blocks: list[nn.Module] = []
    for rate in ctx.drop_path:
        local: nn.Module | None = None
        if st.sample_rate > 1:
            if o["local_agg"] == "lsa":
                local = LsaBlock(dim, st.heads, st.hidden, o["window"], qkv_bias, rate)
            else:
                local = LocalAggBlock(dim, st.hidden, o["agg_kernel"], rate)
        glob = SparseAttnBlock(
            dim, st.heads, st.hidden, st.sample_rate, o["sampler"], o["local_prop"], qkv_bias, rate
        )
        blocks.append(LGLBlock(local, glob))
    return _initialised(blocks)


@block_kind(
    "sra",
    help="PVT spatial-reduction attention block (the paper's 'no local aggregation' ablation); "
    "keys/values reduced by a strided conv of the sample rate",
    samples_rate=True,
    export="ONNX as is; a map the sample rate does not divide is padded (with a warning)",
)
def build_sra_stage(ctx: StageContext) -> list[nn.Module]:
    from ..models.edgevit_blocks import SraBlock

    _warn_if_padded(ctx)
    st = ctx.stage
    return _initialised([
        SraBlock(st.width, st.heads, st.hidden, st.sample_rate, ctx.arch.qkv_bias, rate)
        for rate in ctx.drop_path
    ])


@block_kind(
    "conv",
    help="conv-only block: position encoding, LocalAgg and conv FFN, no attention",
    options={"agg_kernel": _AGG_KERNEL},
    uses_heads=False,
    export="ONNX as is",
)
def build_conv_stage(ctx: StageContext) -> list[nn.Module]:
    from ..models.edgevit_blocks import LocalAggBlock

    st = ctx.stage
    return _initialised([
        LocalAggBlock(st.width, st.hidden, st.opts["agg_kernel"], rate) for rate in ctx.drop_path
    ])


@macro_layout(
    "edgevit",
    help="4×4/4 conv + LayerNorm stem; 2×2/2 conv + LayerNorm downsamplers (the authors' "
    "PatchEmbed, eps 1e-5); BatchNorm2d on the last map; no norm after pooling",
)
def edgevit_macro(arch: ArchConfig) -> Macro:
    from torch import nn

    from ..models.layers import ConvNorm
    from ..models.registry import Macro

    w = arch.widths
    return Macro(
        stem=ConvNorm(arch.in_chans, w[0], 4),
        downsamplers=[ConvNorm(w[i - 1], w[i], 2) for i in range(1, 4)],
        final_norm=nn.BatchNorm2d(w[3]),
        head_norm=nn.Identity(),
    )
