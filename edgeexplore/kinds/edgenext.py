"""EdgeNeXt's block kind (conv encoders followed by SDTA blocks) and macro layout, declared next
to their builders; the modules are in :mod:`edgeexplore.models.edgenext`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ._declare import Option, When, block_kind, macro_layout

if TYPE_CHECKING:
    from torch import nn

    from ..config import ArchConfig, StageConfig
    from ..models.registry import Macro, StageContext

# Without an SDTA block (global_blocks 0) the SDTA options change nothing.
_HAS_SDTA = When("global_blocks", minimum=1)

_OPTIONS = {
    "kernel": Option(7, (3, 5, 7, 9), help="conv encoder depthwise kernel (authors: 3, 5, 7, 9 "
                     "by stage)"),
    "global_blocks": Option(1, minimum=0, help="how many trailing blocks are SDTA (authors: 0 in "
                            "stage 1, else 1); 0 = conv encoders only"),
    "scales": Option(2, minimum=2, when=_HAS_SDTA,
                     help="SDTA channel split groups (authors: 2, 2, 3, 4 by stage)"),
    "pos_emb": Option(False, when=_HAS_SDTA,
                      help="SDTA Fourier position encoding (authors: stage 2 only)"),
    "layer_scale": Option(1e-6, minimum=0.0, help="layer scale init value (0 = no layer scale)"),
}


def _check(stage: StageConfig, opts: dict[str, Any]) -> None:
    if opts["global_blocks"] > stage.depth:
        raise ConfigError(
            f"block 'edgenext': global_blocks {opts['global_blocks']} exceeds the stage "
            f"depth {stage.depth}"
        )
    if opts["global_blocks"] == 0:
        return
    scales = opts["scales"]
    group = -(-stage.width // scales)
    if stage.width - (scales - 1) * group < 1:
        raise ConfigError(
            f"block 'edgenext': width {stage.width} cannot be split into {scales} scales "
            f"(groups of {group} leave the last one empty)"
        )


@block_kind(
    "edgenext",
    help="EdgeNeXt stage: conv encoders (dw k×k + inverted-bottleneck MLP) followed by "
    "global_blocks SDTA blocks (split depthwise cascade + transposed channel attention)",
    options=_OPTIONS,
    check=_check,
    export="ONNX as is (the channel split uses slices: torch.split broke ONNX Runtime)",
)
def build_edgenext_stage(ctx: StageContext) -> list[nn.Module]:
    """``depth - global_blocks`` conv encoders, then ``global_blocks`` SDTA blocks."""
    from ..models.edgenext import ConvEncoder, SDTABlock, init_edgenext_weights

    st = ctx.stage
    opts = st.opts
    n_conv = st.depth - opts["global_blocks"]
    blocks: list[nn.Module] = []
    for j, rate in enumerate(ctx.drop_path):
        if j < n_conv:
            block: nn.Module = ConvEncoder(
                st.width, opts["kernel"], st.mlp_ratio, opts["layer_scale"], rate
            )
        else:
            block = SDTABlock(
                st.width,
                scales=opts["scales"],
                num_heads=st.heads,
                mlp_ratio=st.mlp_ratio,
                use_pos_emb=opts["pos_emb"],
                layer_scale=opts["layer_scale"],
                qkv_bias=ctx.arch.qkv_bias,
                drop_path=rate,
            )
        block.apply(init_edgenext_weights)
        blocks.append(block)
    return blocks


@macro_layout(
    "edgenext",
    help="4×4/4 conv + LayerNorm stem; LayerNorm + 2×2/2 conv downsamplers; no norm on the last "
    "map; LayerNorm on the pooled vector (all eps 1e-6)",
)
def edgenext_macro(arch: ArchConfig) -> Macro:
    from torch import nn

    from ..models.edgenext import LN_EPS, NormConv, init_edgenext_weights
    from ..models.layers import ConvNorm
    from ..models.registry import Macro

    w = arch.widths
    macro = Macro(
        stem=ConvNorm(arch.in_chans, w[0], 4, eps=LN_EPS),
        downsamplers=[NormConv(w[i - 1], w[i], 2) for i in range(1, 4)],
        final_norm=nn.Identity(),
        head_norm=nn.LayerNorm(w[3], eps=LN_EPS),
        # timm pools with adaptive_avg_pool2d, which fvcore counts: same values, same FLOPs
        pool="adaptive",
    )
    for part in (macro.stem, *macro.downsamplers, macro.head_norm):
        part.apply(init_edgenext_weights)
    return macro
