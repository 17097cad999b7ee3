"""EdgeFormer's global circular convolution block kind, declared next to its builder; the
modules are in :mod:`edgeexplore.models.gcc`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ._declare import Option, block_kind

if TYPE_CHECKING:
    from torch import nn

    from ..config import StageConfig
    from ..models.registry import StageContext


def _check(stage: StageConfig, opts: dict[str, Any]) -> None:
    if stage.width % 2:
        raise ConfigError(f"block 'gcc' splits channels in half; width {stage.width} is odd")


@block_kind(
    "gcc",
    help="EdgeFormer gcc_ca block: global circular convs over H and W in two channel halves, "
    "conv FFN (width × mlp_ratio) with channel attention; the meta kernel length is the "
    "stage's map size at the nominal resolution",
    options={
        "use_pe": Option(True, help="learned position embedding added before each circular conv"),
        "bias": Option(False, help="bias on the circular convs (the reference gcc_ca has none)"),
    },
    uses_heads=False,
    check=_check,
    export="ONNX as Concat + Resize + Conv; other input sizes resize the meta kernel per axis",
)
def build_gcc_stage(ctx: StageContext) -> list[nn.Module]:
    """``depth`` GCC blocks whose meta kernels span the stage's nominal map (H and W)."""
    from ..models.gcc import GCCBlock

    st = ctx.stage
    opts = st.opts
    return [
        GCCBlock(
            st.width,
            meta_kernel=ctx.nominal_size,
            ffn_dim=st.hidden,
            use_pe=opts["use_pe"],
            bias=opts["bias"],
            drop_path=rate,
        )
        for rate in ctx.drop_path
    ]
