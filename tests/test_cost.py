"""The cost model reproduces the authors' fvcore figures and counts fused attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeexplore.config import get_preset
from edgeexplore.cost import CostReport, count_cost, sdpa_flop_jit
from edgeexplore.errors import ConfigError
from edgeexplore.models import build

OFFICIAL = {
    "edgevit_xxs": (4_067_704, 557_457_984),
    "edgevit_xs": (6_770_056, 1_136_470_560),
    "edgevit_s": (13_108_168, 1_923_271_008),
}


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_presets_match_the_authors_numbers(name):
    report = count_cost(get_preset(name))
    params, flops = OFFICIAL[name]
    assert report.params == params
    assert report.flops == flops
    assert sum(report.per_stage.values()) == flops
    assert sum(report.per_module.values()) == flops
    assert report.activations > 0


def test_xxs_per_module_breakdown():
    report = count_cost(get_preset("edgevit_xxs"))
    assert report.per_module == {
        "stem": 5_983_488, "downsample2": 8_410_752, "downsample3": 8_269_632,
        "downsample4": 8_199_072, "blocks1": 87_861_312, "blocks2": 89_357_184,
        "blocks3": 248_215_968, "blocks4": 100_844_352, "norm": 28_224, "head": 288_000,
    }
    # a stage includes its downsampler; the head group holds the final norm and classifier
    assert report.per_stage == {
        "stem": 5_983_488, "stage1": 87_861_312, "stage2": 8_410_752 + 89_357_184,
        "stage3": 8_269_632 + 248_215_968, "stage4": 8_199_072 + 100_844_352,
        "head": 28_224 + 288_000,
    }


class _Attention(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


def test_sdpa_handle_counts_both_matmuls():
    from fvcore.nn import FlopCountAnalysis

    q, k, v = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 4)
    flops = FlopCountAnalysis(_Attention(), (q, k, v))
    flops.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
    flops.unsupported_ops_warnings(False)
    assert flops.total() == 2 * 3 * 10 * 6 * (8 + 4)


def test_attention_flops_are_counted_in_the_model():
    from fvcore.nn import FlopCountAnalysis

    model = build(get_preset("edgevit_xxs")).eval()
    plain = FlopCountAnalysis(model, torch.zeros(1, 3, 224, 224))
    plain.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    # q·kᵀ and attn·v over the sampled tokens: (tokens² · width · 2) per block
    tokens = {0: 14 * 14, 1: 14 * 14, 2: 7 * 7, 3: 7 * 7}
    expected = sum(
        tokens[i] ** 2 * s.width * 2 * s.depth for i, s in enumerate(model.arch.stages)
    )
    assert expected == 13_138_272
    # and the local propagation (an addcmul standing for the authors' depthwise transposed
    # conv): one multiply-add per element of the full-resolution map in stages 1-3
    maps = {0: 56 * 56, 1: 28 * 28, 2: 14 * 14}
    prop = sum(maps[i] * s.width * s.depth for i, s in enumerate(model.arch.stages) if i < 3)
    assert prop == 254_016
    assert count_cost(model).flops - plain.total() == expected + prop


def test_model_and_resolution_arguments():
    arch = get_preset("edgevit_xxs")
    model = build(arch)
    from_model = count_cost(model, resolution="256x192")
    from_arch = count_cost(arch, resolution=(256, 192))
    assert from_model.flops == from_arch.flops
    assert from_model.resolution == (256, 192)
    assert isinstance(from_model, CostReport)
    assert from_arch.to_dict()["resolution"] == [256, 192]
    assert model.training  # counting leaves the mode as it was
    with pytest.raises(ConfigError):
        count_cost(nn.Linear(2, 2))
    with pytest.raises(ConfigError):
        count_cost("edgevit_xxs")


def test_adaptive_pool_flops_are_in_the_head_group():
    # EdgeNeXt's layout pools with adaptive_avg_pool2d, which fvcore counts: those FLOPs belong
    # to the head group, so both breakdowns still add up to the total
    report = count_cost(get_preset("edgenext_xx_small"))
    assert sum(report.per_stage.values()) == report.flops
    assert sum(report.per_module.values()) == report.flops
