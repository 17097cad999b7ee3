"""fuse_for_inference: the deployable form computes what the model as built computes, for every
preset and block kind, and leaves the model (and so its checkpoints) untouched."""

from __future__ import annotations

import pytest
import torch
from block_nets import NETS, RES, net, with_bn_statistics

from edgeexplore.config import PRESETS
from edgeexplore.latency import get_backend
from edgeexplore.models import build, fuse_for_inference
from edgeexplore.models.fuse import FusedBlock, OneDnnLinear, SampledAttention, _onednn

# LocalAgg, LSA, sparse-attention and SRA blocks are fused; GCC and EdgeNeXt blocks are kept
FUSED_KINDS = ("lgl", "sra", "conv")


def trained_looking(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so folding them is really
    checked (fresh BatchNorms are the identity)."""
    for m in with_bn_statistics(model).modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def assert_same_function(model: torch.nn.Module, *sizes: tuple[int, int]) -> torch.nn.Module:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_inference(model)
    for size in sizes:
        x = torch.randn(2, 3, *size)
        with torch.inference_mode():
            torch.testing.assert_close(fused(x), model(x), atol=1e-5, rtol=1e-5)
    # the model as built keeps its keys and values: checkpoints load and save as before
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], v) for k, v in before.items())
    return fused


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset(name):
    torch.manual_seed(0)
    model = trained_looking(build(PRESETS[name]))
    fused = assert_same_function(model, PRESETS[name].resolution)
    kinds = {st.block for st in PRESETS[name].stages}
    blocks = [m for m in fused.modules() if isinstance(m, FusedBlock)]
    assert bool(blocks) == bool(kinds & set(FUSED_KINDS))
    # every BatchNorm of a fused block is folded into a conv
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for b in blocks for m in b.modules())
    if not blocks:
        assert fused is model


@pytest.mark.parametrize("name", list(NETS))
def test_every_block_kind(name):
    torch.manual_seed(0)
    model = trained_looking(build(net(name)))
    # 64×96 is off the nominal size: padded samplers and LSA windows, resized GCC kernels
    fused = assert_same_function(model, (RES, RES), (RES, RES + 32))
    scripted = torch.jit.script(fused)
    x = torch.randn(1, 3, RES, RES + 32)
    with torch.inference_mode():
        torch.testing.assert_close(scripted(x), model(x), atol=1e-5, rtol=1e-5)


def test_picked_samples_are_normed_alone():
    # only samplers that pick tokens may move the LayerNorm after sampling
    model = build(net("lgl-samplers"))
    picked = [m for m in fuse_for_inference(model).modules() if isinstance(m, SampledAttention)]
    assert [m.attn.sampler for m in picked] == ["center"]


def test_backends_time_the_fused_model(monkeypatch):
    seen = []
    backend = get_backend("torch-cpu", min_samples=1, max_samples=2, budget_s=0.05)
    prepare = type(backend).prepare
    monkeypatch.setattr(type(backend), "prepare",
                        lambda self, model, x: seen.append(model) or prepare(self, model, x))
    backend.measure(build(net("conv")), (1, 3, RES, RES))
    assert any(isinstance(m, FusedBlock) for m in seen[0].modules())


def test_onednn_linear_equals_f_linear():
    torch.manual_seed(0)
    x = torch.randn(1, 7, 9, 48)[:, ::2]  # strided, as the picked samples are
    for gelu in (False, True):
        fast = OneDnnLinear(torch.nn.Linear(48, 96), gelu=gelu)
        with torch.no_grad():
            assert _onednn(x) == torch.backends.mkldnn.is_available()
            out = fast(x)
        reference = fast(x)  # autograd on: F.linear (and F.gelu)
        assert reference.grad_fn is not None
        torch.testing.assert_close(out, reference.detach(), atol=1e-5, rtol=1e-5)
