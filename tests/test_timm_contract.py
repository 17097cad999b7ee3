"""timm's model contract, for every preset and for nets covering every block kind and option.

Models are small (64×64 inputs; presets at their own widths) so the file runs in well under a
minute on 2 CPU cores. Each check asserts values, not only that a call returns.
"""

from __future__ import annotations

import functools
import warnings

import pytest
import timm
import torch
from block_nets import NETS, RES, net, with_bn_statistics
from timm.models._features import FeatureGetterNet
from timm.optim import create_optimizer_v2, param_groups_layer_decay

from edgeexplore.config import PRESETS
from edgeexplore.errors import EdgeExploreError
from edgeexplore.models import build
from edgeexplore.models.timm_models import REGISTERED

MODELS = [f"preset:{n}" for n in PRESETS] + [f"net:{n}" for n in NETS]


def _arch(name: str):
    kind, _, key = name.partition(":")
    if kind == "preset":
        return PRESETS[key].replace(resolution=(RES, RES), num_classes=4)
    return net(key, num_classes=4)


@functools.cache
def _eval_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = with_bn_statistics(build(_arch(name)).eval())
    return model


def fresh(name: str) -> torch.nn.Module:
    """A private copy (tests below change heads and flags)."""
    model = build(_arch(name)).eval()
    model.load_state_dict(_eval_model(name).state_dict())
    return model


def image(batch: int = 2, h: int = RES, w: int = RES) -> torch.Tensor:
    return torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier_pool_types(name):
    model = fresh(name)
    x = image()
    with torch.no_grad():
        feats = model.forward_features(x)
        c = model.num_features
        assert feats.shape == (2, c, RES // 32, RES // 32)
        pooled = {
            "avg": feats.mean((2, 3)), "max": feats.amax((2, 3)),
            "avgmax": 0.5 * (feats.mean((2, 3)) + feats.amax((2, 3))),
        }
        for pool, vec in pooled.items():
            model.reset_classifier(0, pool)
            expect = model.head_norm(vec)
            torch.testing.assert_close(model(x), expect, atol=1e-5, rtol=1e-5)
        model.reset_classifier(0, "")
        out = model(x)
        # unpooled: the map itself (the EdgeNeXt layout's head LayerNorm acts per position)
        expect = model.head_norm(feats.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        assert out.shape == (2, c, RES // 32, RES // 32)
        torch.testing.assert_close(out, expect)
        model.reset_classifier(3)  # pooling stays '' when not given: per-position logits
        assert model(x).shape == (2, 3, RES // 32, RES // 32)
        model.reset_classifier(3, "max")
        logits = model(x)
        torch.testing.assert_close(logits, model.head(model.head_norm(pooled["max"])))
        assert model.get_classifier().out_features == 3
    with pytest.raises(EdgeExploreError, match="global_pool must be one of"):
        model.reset_classifier(0, "catavgmax")


@pytest.mark.parametrize("name", MODELS)
def test_pre_logits_and_cfg_fields(name):
    model = _eval_model(name)
    x = image()
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (2, model.head_hidden_size)
        assert model.head_hidden_size == model.num_features == feats.shape[1]
        torch.testing.assert_close(model.head(pre), model(x))
    cfg = model.pretrained_cfg
    assert cfg is model.default_cfg
    assert cfg["input_size"] == (3, RES, RES)
    assert cfg["pool_size"] == tuple(feats.shape[-2:])
    state = model.state_dict()
    first = state[cfg["first_conv"] + ".weight"]
    assert first.shape[1] == cfg["input_size"][0]
    assert state[cfg["classifier"] + ".weight"].shape == (cfg["num_classes"], model.num_features)


@pytest.mark.parametrize("name", REGISTERED)
def test_timm_create_model_cfg_is_the_built_model(name):
    model = timm.create_model(name, img_size=(64, 96), in_chans=1, num_classes=0).eval()
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (1, 64, 96) and cfg["pool_size"] == (2, 3)
    assert cfg["first_conv"] == "stem.conv" and cfg["classifier"] == "head"
    with torch.no_grad():
        assert model(torch.randn(1, 1, 64, 96)).shape == (1, model.num_features)


@pytest.mark.parametrize("name", MODELS)
def test_torchscript_and_fx_match_eager(name):
    model = _eval_model(name)
    x, wide = image(), image(1, RES, RES + 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated (still supported)
        scripted = torch.jit.script(model)
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        for inp in (x, wide):  # the traced graph has no sizes baked in
            ref = model(inp)
            torch.testing.assert_close(scripted(inp), ref, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(traced(inp), ref, atol=0, rtol=0)
        # the input check survives both: a clear message, not a shape error inside a block
        bad = torch.randn(1, 3, 48, 64)
        with pytest.raises(EdgeExploreError, match="multiples of 32"):
            traced(bad)
        with pytest.raises(Exception, match="multiples of 32"):
            scripted(bad)
        with pytest.raises(EdgeExploreError, match="multiples of 32"):
            model(bad)


def _saved_tensors_and_block_calls(model, x):
    """(tensors autograd saved for backward, forward calls of the first block of stage 1)."""
    calls = []
    block = model.stages[1].blocks[0]
    inner = block.forward

    def counted(x):  # module hooks do not fire in checkpoint's recomputation; this does
        calls.append(1)
        return inner(x)

    block.forward = counted
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        loss = model(x).square().sum()
    forward_calls = len(calls)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return len(saved), forward_calls, len(calls), grads


@pytest.mark.parametrize("name", ["net:lgl-official-k3-lsa", "net:gcc", "net:sdta-hybrid"])
def test_grad_checkpointing_recomputes_with_equal_gradients(name):
    x = image()
    plain = fresh(name).train()
    ckpt = fresh(name).train()
    ckpt.set_grad_checkpointing(True)
    n_plain, fwd_plain, total_plain, g_plain = _saved_tensors_and_block_calls(plain, x)
    n_ckpt, fwd_ckpt, total_ckpt, g_ckpt = _saved_tensors_and_block_calls(ckpt, x)
    assert (fwd_plain, total_plain) == (1, 1)
    assert (fwd_ckpt, total_ckpt) == (1, 2)  # run again in the backward pass
    assert n_ckpt < n_plain / 2  # only block inputs are kept
    assert g_plain.keys() == g_ckpt.keys()
    for k in g_plain:
        torch.testing.assert_close(g_ckpt[k], g_plain[k], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["preset:edgevit_xxs", "net:edgenext-macro"])
def test_group_matcher_drives_layer_decay(name):
    model = fresh(name)
    groups = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=0.5)
    scale_of = {}
    for g in groups:
        for p in g["params"]:
            assert id(p) not in scale_of
            scale_of[id(p)] = g["lr_scale"]
    named = dict(model.named_parameters())
    assert set(scale_of) == {id(p) for p in named.values()}

    def scale(prefix):
        return {scale_of[id(p)] for n, p in named.items() if n.startswith(prefix)}

    # depth order: stem < first block < a stage's downsampler, which shares the scale of its
    # stage's first block < ... < last block, which the norms and classifier join (timm's
    # MATCH_PREV_GROUP) at scale 1
    order = ["stem.", "stages.0.blocks.0.", "stages.1.downsample.", "stages.1.blocks.0.",
             "stages.3.blocks.0.", "head."]
    seq = [scale(p) for p in order]
    assert all(len(s) == 1 for s in seq)
    stem, first, down1, block1, last, head = (s.pop() for s in seq)
    assert stem < first < down1 == block1 < last <= head == 1.0
    assert scale(f"stages.3.blocks.{len(model.stages[3].blocks) - 1}.") == {1.0}
    blocks = sum(len(stage.blocks) for stage in model.stages)
    assert len({g["lr_scale"] for g in groups}) == blocks + 1  # the stem, then every block
    opt = create_optimizer_v2(model, "adamw", lr=1e-3, layer_decay=0.7)
    assert min(g["lr_scale"] for g in opt.param_groups) < 1.0


@pytest.mark.parametrize("name", MODELS)
def test_features_only_out_indices(name):
    model = fresh(name)
    feats = FeatureGetterNet(model, out_indices=(1, 3))
    with torch.no_grad():
        maps = feats(image(1, RES, RES + 32))
    assert [m.shape[1] for m in maps] == feats.feature_info.channels()
    assert feats.feature_info.reduction() == [8, 32]
    assert [tuple(m.shape[-2:]) for m in maps] == [(RES // 8, (RES + 32) // 8), (2, 3)]


@pytest.mark.parametrize("name", REGISTERED)
def test_timm_features_only(name):
    model = timm.create_model(name, features_only=True, out_indices=(0, 2), img_size=RES).eval()
    widths = PRESETS[name].widths
    assert model.feature_info.channels() == [widths[0], widths[2]]
    with torch.no_grad():
        maps = model(torch.randn(1, 3, RES, RES))
    assert [tuple(m.shape[1:]) for m in maps] == [(widths[0], 16, 16), (widths[2], 4, 4)]
