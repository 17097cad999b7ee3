"""The configurable backbone: shapes, errors, the timm protocol and every block choice."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import edgeexplore  # noqa: F401  (registers the presets with timm)
from edgeexplore.config import ArchConfig, StageConfig, get_preset
from edgeexplore.errors import ConfigError, EdgeExploreError
from edgeexplore.models import build
from edgeexplore.models.registry import block_builder

#: every block choice of the EdgeViT family: (block kind, options)
CHOICES = {
    "lgl": ("lgl", {}),
    "lgl-k3": ("lgl", {"agg_kernel": 3}),
    "lgl-lsa": ("lgl", {"local_agg": "lsa", "window": 7}),
    "lgl-center": ("lgl", {"sampler": "center"}),
    "lgl-avg": ("lgl", {"sampler": "avg"}),
    "lgl-max": ("lgl", {"sampler": "max"}),
    "lgl-bilinear": ("lgl", {"local_prop": "bilinear"}),
    "lgl-nearest": ("lgl", {"local_prop": "nearest"}),
    "sra": ("sra", {}),
    "conv": ("conv", {}),
    "conv-k3": ("conv", {"agg_kernel": 3}),
}
SIZES = [(224, 224), (256, 192)]


def tiny_arch(
    block: str = "lgl", options: dict | None = None, rates=(4, 4, 4, 1), **kw
) -> ArchConfig:
    """A small net whose first three stages use ``block``; sample rate 4 in stage 3 makes the
    14×14 map at 224 (and 16×12 at 256×192) need padding."""
    widths = (8, 16, 16, 32)
    stages = [
        StageConfig(depth=1, width=w, heads=2, mlp_ratio=2.0, sample_rate=r, block=block,
                    options=options or {})
        for w, r in zip(widths[:3], rates[:3])
    ]
    stages.append(StageConfig(depth=1, width=widths[3], heads=2, mlp_ratio=2.0,
                              sample_rate=rates[3]))
    return ArchConfig(stages=tuple(stages), num_classes=kw.pop("num_classes", 7), **kw)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_preset_output_shapes(size):
    model = build(get_preset("edgevit_xxs").replace(num_classes=10)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_preset_parameter_counts():
    expected = {"edgevit_xxs": 4_067_704, "edgevit_xs": 6_770_056, "edgevit_s": 13_108_168}
    for name, n in expected.items():
        with torch.device("meta"):
            model = build(get_preset(name))
        assert sum(p.numel() for p in model.parameters()) == n, name


def test_stage_4_heads_follow_head_dim():
    # XS and S have width 240 / head_dim 48 = 5 heads in stage 3
    model = build(get_preset("edgevit_xs"))
    attn = model.stages[2].blocks[0].global_attn.attn
    assert attn.heads == 5


@pytest.mark.parametrize("size", [(224, 200), (100, 96), (16, 32)])
def test_input_not_multiple_of_32_is_a_clear_error(size):
    model = build(tiny_arch())
    with pytest.raises(EdgeExploreError, match="multiples of 32"):
        model(torch.randn(1, 3, *size))


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(EdgeExploreError, match="3 input channels"):
        build(tiny_arch())(torch.randn(1, 1, 64, 64))


def test_forward_features_head_and_reset_classifier():
    model = build(tiny_arch()).eval()
    x = torch.randn(2, 3, 256, 192)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 32, 8, 6)
        pooled = model.forward_head(feats, pre_logits=True)
        assert pooled.shape == (2, 32)
        torch.testing.assert_close(pooled, feats.mean((2, 3)))
        logits = model.forward_head(feats)
        torch.testing.assert_close(logits, model(x))
        torch.testing.assert_close(logits, model.head(pooled))
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)
    assert model.arch.num_classes == 3
    model.reset_classifier(0)
    assert isinstance(model.head, nn.Identity)
    assert model(x).shape == (2, 32)


def test_stage_feature_maps():
    model = build(tiny_arch()).eval()
    x = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        maps = model.stage_features(x)
        final, inter = model.forward_intermediates(x, indices=[1, -1], norm=True)
    assert [tuple(m.shape) for m in maps] == [
        (1, 8, 64, 48), (1, 16, 32, 24), (1, 16, 16, 12), (1, 32, 8, 6)
    ]
    assert len(inter) == 2
    torch.testing.assert_close(inter[0], maps[1])
    torch.testing.assert_close(inter[1], model.norm(maps[3]))
    torch.testing.assert_close(final, model.forward_features(x))
    assert [f["reduction"] for f in model.feature_info] == [4, 8, 16, 32]


def test_module_layout_matches_contract():
    model = build(tiny_arch())
    assert isinstance(model.stages, nn.ModuleList) and len(model.stages) == 4
    assert isinstance(model.stages[0].downsample, nn.Identity)
    assert isinstance(model.stages[1].blocks, nn.Sequential)
    assert isinstance(model.norm, nn.BatchNorm2d)
    assert model.arch == tiny_arch()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("choice", list(CHOICES))
def test_every_block_choice_trains(choice, size):
    block, options = CHOICES[choice]
    torch.manual_seed(0)
    model = build(tiny_arch(block, options, drop_path_rate=0.1)).train()
    out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 7)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_sample_rate_one_lgl_is_the_official_stage4_block():
    model = build(tiny_arch(rates=(4, 2, 2, 1)))
    last = model.stages[3].blocks[0]
    assert isinstance(last.local_agg, nn.Identity)
    # no propagation norm (None, so TorchScript can drop its branch) and no such weights
    assert last.global_attn.attn.prop_norm is None
    assert not any("prop" in k for k in last.state_dict())


def test_samplers_pick_what_they_say():
    from edgeexplore.models.attention import SparseGlobalAttention

    x = torch.arange(2 * 16, dtype=torch.float32).reshape(1, 2, 4, 4)
    expect = {
        "pick": x[..., ::2, ::2],
        "center": x[..., 1::2, 1::2],
        "avg": torch.nn.functional.avg_pool2d(x, 2),
        "max": x[..., 1::2, 1::2],
    }
    for name, want in expect.items():
        attn = SparseGlobalAttention(2, 1, sample_rate=2, sampler=name)
        picked = attn.sample_tokens(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        torch.testing.assert_close(picked, want)


def test_window_attention_ignores_padding():
    from edgeexplore.models.attention import WindowAttention

    torch.manual_seed(0)
    attn = WindowAttention(8, 2, window=4).eval()
    x = torch.randn(1, 6, 5, 8)
    with torch.no_grad():
        full = attn(x)
        # the top-left 4×4 window holds no padding: it must equal attention over it alone
        alone = attn(x[:, :4, :4])
    torch.testing.assert_close(full[:, :4, :4], alone)


def test_drop_path_rises_linearly_over_all_blocks():
    from timm.layers import DropPath

    arch = get_preset("edgevit_xxs").replace(drop_path_rate=0.1)
    model = build(arch)
    rates = []
    for stage in model.stages:
        for block in stage.blocks:
            found = [m.drop_prob for m in block.global_attn.modules() if isinstance(m, DropPath)]
            rates.append(found[0] if found else 0.0)
    n = arch.num_blocks
    assert rates == pytest.approx([0.1 * i / (n - 1) for i in range(n)])


def test_init_follows_the_authors():
    torch.manual_seed(0)
    model = build(get_preset("edgevit_xxs"))
    fc = model.stages[3].blocks[0].global_attn.mlp.fc1
    assert fc.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert fc.bias.abs().max().item() == 0.0
    ln = model.stages[0].blocks[0].global_attn.norm1
    assert ln.eps == 1e-6 and torch.all(ln.weight == 1)
    assert model.stem.norm.eps == 1e-5


def test_unknown_block_kind_has_no_builder():
    with pytest.raises(ConfigError, match="unknown block 'no-such-block' .valid blocks: conv, "):
        block_builder("no-such-block")


def test_timm_create_model():
    model = timm.create_model("edgevit_xxs", num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 10)
    assert model.pretrained_cfg["input_size"] == (3, 224, 224)
    assert {"edgevit_xxs", "edgevit_xs", "edgevit_s"} <= set(timm.list_models("edgevit*"))
    feats = timm.create_model("edgevit_xs", features_only=True, out_indices=(1, 3))
    with torch.no_grad():
        maps = feats(torch.randn(1, 3, 256, 192))
    assert [tuple(m.shape) for m in maps] == [(1, 96, 32, 24), (1, 384, 8, 6)]
    with pytest.raises(EdgeExploreError, match="no pretrained weights"):
        timm.create_model("edgevit_s", pretrained=True)
