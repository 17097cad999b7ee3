"""Small nets that together cover every block kind and option, for contract and export tests.

Each net puts block choices into stages 1-3 and a sample-rate-1 block into stage 4, at widths
and a resolution (64×64: stage maps 16, 8, 4, 2) small enough for 2 CPU cores.
"""

from __future__ import annotations

import torch

from edgeexplore.config import ArchConfig, StageConfig

RES = 64
SDTA = {"global_blocks": 1, "scales": 2, "pos_emb": True, "kernel": 3}

# name -> ((block, options, sample_rate) for stages 1-3, stage 4 block, macro)
NETS = {
    "lgl-official-k3-lsa": ([("lgl", {}, 4), ("lgl", {"agg_kernel": 3}, 2),
                             ("lgl", {"local_agg": "lsa", "window": 3}, 2)], "lgl", "edgevit"),
    "lgl-samplers": ([("lgl", {"sampler": "center"}, 4), ("lgl", {"sampler": "avg"}, 2),
                      ("lgl", {"sampler": "max"}, 4)], "sra", "edgevit"),
    "lgl-prop-sra": ([("lgl", {"local_prop": "bilinear"}, 4),
                      ("lgl", {"local_prop": "nearest"}, 2), ("sra", {}, 2)], "lgl", "edgevit"),
    "conv": ([("conv", {}, 1), ("conv", {"agg_kernel": 3}, 1), ("conv", {}, 1)], "lgl", "edgevit"),
    "gcc": ([("conv", {}, 1), ("gcc", {}, 1), ("gcc", {"use_pe": False, "bias": True}, 1)],
            "lgl", "edgevit"),
    "sdta-hybrid": ([("lgl", {}, 4), ("edgenext", SDTA, 1),
                     ("edgenext", {"global_blocks": 1, "scales": 3, "kernel": 5}, 1)],
                    "lgl", "edgevit"),
    "edgenext-macro": ([("edgenext", {"global_blocks": 0, "kernel": 3}, 1),
                        ("edgenext", SDTA, 1), ("edgenext", {"global_blocks": 2, "scales": 3}, 1)],
                       "edgenext", "edgenext"),
}


def net(name: str, num_classes: int = 5) -> ArchConfig:
    first, last, macro = NETS[name]
    stages = [
        StageConfig(depth=2 if b == "edgenext" else 1, width=w, heads=2, mlp_ratio=2.0,
                    sample_rate=r, block=b, options=o)
        for w, (b, o, r) in zip((8, 16, 24), first)
    ]
    last_opts = {"global_blocks": 1, "scales": 2} if last == "edgenext" else {}
    stages.append(StageConfig(depth=1, width=32, heads=2, mlp_ratio=2.0, sample_rate=1,
                              block=last, options=last_opts))
    return ArchConfig(stages=tuple(stages), num_classes=num_classes, resolution=(RES, RES),
                      macro=macro)


def with_bn_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """Give every BatchNorm non-trivial running statistics (fresh ones are the identity in eval
    mode), so exporting, fusing or comparing eval-mode outputs really checks them."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model
