"""EdgeFormer GCC block: fixture, an independent reference at other sizes, cost, ONNX, presets."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeexplore.config import ConfigError, StageConfig, get_preset
from edgeexplore.cost import count_cost
from edgeexplore.models import block_from_official, build
from edgeexplore.models.gcc import GCCBlock


def test_gcc_fixture_reproduces_the_authors_outputs(shared_dir):
    fx = torch.load(shared_dir / "reference" / "gcc_block.pt", weights_only=True)
    cfg = fx["config"]
    block = block_from_official(
        "gcc",
        fx["state_dict"],
        dim=cfg["dim"],
        meta_kernel_size=cfg["meta_kernel"],
        use_pe=cfg["pos_emb"],
        bias=cfg["bias"],
        ffn_dim=cfg["ffn_dim"],
    )
    assert sum(p.numel() for p in block.parameters()) == 94_914
    sizes = []
    for case in fx["cases"]:
        with torch.no_grad():
            out = block(case["input"])
        assert (out - case["output"]).abs().max().item() < 1e-4
        sizes.append(tuple(case["input"].shape[2:]))
    assert sizes == [(14, 14), (12, 12)]
    again = block_from_official("gcc", fx["state_dict"], **cfg)  # the fixture's metadata names
    with torch.no_grad():
        assert torch.equal(again(fx["cases"][1]["input"]), block(fx["cases"][1]["input"]))


# -- an independent reference written from the description, on the authors' key names --------


def _resize(t: torch.Tensor, n: int) -> torch.Tensor:
    """1-D linear resize with aligned corners of (..., K) to (..., n), by hand."""
    k = t.shape[-1]
    if n == 1 or k == 1:
        return t[..., :1].expand(*t.shape[:-1], n)
    pos = torch.arange(n, dtype=torch.float64) * (k - 1) / (n - 1)
    lo = pos.floor().long().clamp(max=k - 2)
    frac = (pos - lo).to(t.dtype)
    return t[..., lo] * (1 - frac) + t[..., lo + 1] * frac


def _circ(x: torch.Tensor, kernel: torch.Tensor, bias, dim: int) -> torch.Tensor:
    """out[i] = Σ_k K[k]·x[(i+k) mod n] along ``dim`` (2 = H, 3 = W); kernel (C, n)."""
    n = x.shape[dim]
    out = torch.zeros_like(x)
    for k in range(n):
        w = kernel[:, k].view(1, -1, 1, 1)
        out = out + w * torch.roll(x, shifts=-k, dims=dim)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def _bn(x, sd, prefix):
    return F.batch_norm(
        x,
        sd[f"{prefix}.running_mean"],
        sd[f"{prefix}.running_var"],
        sd[f"{prefix}.weight"],
        sd[f"{prefix}.bias"],
        False,
        0.0,
        1e-5,
    )


def _reference(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[2:]
    half = x.shape[1] // 2

    def kern(name, n):
        return _resize(sd[name].reshape(half, -1), n)  # (C, K) → (C, n)

    def pe(name, n, axis):
        if name not in sd:
            return 0
        v = _resize(sd[name].reshape(half, -1), n)  # (C, n)
        return v.view(1, half, n, 1) if axis == "h" else v.view(1, half, 1, n)

    x1, x2 = x[:, :half], x[:, half:]
    y1 = _bn(x1 + pe("meta_pe_1_H", h, "h"), sd, "pre_Norm_1")
    y1 = _circ(y1, kern("meta_kernel_1_H", h), sd.get("meta_1_H_bias"), 2) + pe(
        "meta_pe_2_W", w, "w"
    )
    y1 = _circ(y1, kern("meta_kernel_2_W", w), sd.get("meta_2_W_bias"), 3)
    y2 = _bn(x2 + pe("meta_pe_1_W", w, "w"), sd, "pre_Norm_2")
    y2 = _circ(y2, kern("meta_kernel_1_W", w), sd.get("meta_1_W_bias"), 3) + pe(
        "meta_pe_2_H", h, "h"
    )
    y2 = _circ(y2, kern("meta_kernel_2_H", h), sd.get("meta_2_H_bias"), 2)
    z = torch.cat((x1 + y1, x2 + y2), 1)
    f = _bn(z, sd, "ffn.0")
    f = F.conv2d(
        F.hardswish(F.conv2d(f, sd["ffn.1.weight"], sd["ffn.1.bias"])),
        sd["ffn.4.weight"],
        sd["ffn.4.bias"],
    )
    s = F.conv2d(f.mean((2, 3), keepdim=True), sd["ca.fc.0.weight"])
    s = F.conv2d(F.hardswish(_bn(s, sd, "ca.fc.1")), sd["ca.fc.3.weight"])
    s = F.hardsigmoid(_bn(s, sd, "ca.fc.4"))
    return z + f * s


def _random_authors_state(dim: int, meta: int, ffn: int, use_pe: bool, bias: bool, seed: int):
    g = torch.Generator().manual_seed(seed)
    c = dim // 2
    r = dim // 16

    def rnd(*shape, scale=1.0):
        return torch.randn(shape, generator=g) * scale

    sd = {}
    for i in (1, 2):
        sd[f"meta_kernel_{i}_H"] = rnd(c, 1, meta, 1, scale=0.3)
        sd[f"meta_kernel_{i}_W"] = rnd(c, 1, 1, meta, scale=0.3)
        if bias:
            sd[f"meta_{i}_H_bias"] = rnd(c)
            sd[f"meta_{i}_W_bias"] = rnd(c)
        if use_pe:
            sd[f"meta_pe_{i}_H"] = rnd(1, c, meta, 1)
            sd[f"meta_pe_{i}_W"] = rnd(1, c, 1, meta)
    for prefix, n in (
        ("pre_Norm_1", c),
        ("pre_Norm_2", c),
        ("ffn.0", dim),
        ("ca.fc.1", r),
        ("ca.fc.4", dim),
    ):
        sd[f"{prefix}.weight"] = rnd(n, scale=0.2) + 1
        sd[f"{prefix}.bias"] = rnd(n, scale=0.2)
        sd[f"{prefix}.running_mean"] = rnd(n, scale=0.2)
        sd[f"{prefix}.running_var"] = torch.rand(n, generator=g) + 0.5
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(7)
    sd["ffn.1.weight"] = rnd(ffn, dim, 1, 1, scale=dim**-0.5)
    sd["ffn.1.bias"] = rnd(ffn, scale=0.1)
    sd["ffn.4.weight"] = rnd(dim, ffn, 1, 1, scale=ffn**-0.5)
    sd["ffn.4.bias"] = rnd(dim, scale=0.1)
    sd["ca.fc.0.weight"] = rnd(r, dim, 1, 1, scale=dim**-0.5)
    sd["ca.fc.3.weight"] = rnd(dim, r, 1, 1, scale=r**-0.5)
    return sd


@pytest.mark.parametrize(
    "dim,meta,ffn,use_pe,bias,sizes",
    [
        (64, 8, 128, True, True, [(8, 8), (6, 6), (8, 12), (10, 5)]),
        (96, 7, 384, False, False, [(7, 7), (7, 14), (4, 3)]),
    ],
)
def test_other_configurations_and_non_square_maps_match_the_reference(
    dim, meta, ffn, use_pe, bias, sizes
):
    sd = _random_authors_state(dim, meta, ffn, use_pe, bias, seed=dim)
    block = block_from_official(
        "gcc", sd, dim=dim, meta_kernel_size=meta, use_pe=use_pe, bias=bias, ffn_dim=ffn
    )
    inferred = block_from_official("gcc", sd)  # everything read off the state dict
    for h, w in sizes:
        x = torch.randn(1, dim, h, w)
        with torch.no_grad():
            want = _reference(sd, x)
            assert (block(x) - want).abs().max().item() < 1e-4
            assert torch.equal(inferred(x), block(x))
    # round trip: our state dict holds exactly the authors' tensors
    assert sum(v.numel() for k, v in sd.items() if "num_batches" not in k) == sum(
        p.numel() for p in block.parameters()
    ) + sum(b.numel() for n, b in block.named_buffers() if "num_batches" not in n)


def test_conversion_errors_are_clear():
    sd = _random_authors_state(32, 4, 64, True, False, seed=0)
    with pytest.raises(ConfigError, match="meta_kernel_size=5 but the state dict says 4"):
        block_from_official("gcc", sd, meta_kernel_size=5)
    with pytest.raises(ConfigError, match="bias=True but the state dict says False"):
        block_from_official("gcc", sd, bias=True)
    with pytest.raises(ConfigError, match="instance_kernel_method 'crop'"):
        block_from_official("gcc", sd, instance_kernel_method="crop")
    with pytest.raises(ConfigError, match="odd"):
        GCCBlock(33, 4)


def test_flops_follow_the_formula_at_and_off_the_nominal_size():
    from fvcore.nn import FlopCountAnalysis

    c, ffn = 64, 256
    block = GCCBlock(c, (8, 8), ffn_dim=ffn).eval()
    r = c // 16
    for h, w in ((8, 8), (12, 6)):
        fa = FlopCountAnalysis(block, torch.randn(1, c, h, w))
        fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        # circular convs C·H·W·(H+W), BatchNorms 2/element, FFN, SE
        want = c * h * w * (h + w) + 4 * c * h * w + 2 * c * ffn * h * w + 2 * c * r + 2 * r + 2 * c
        if (h, w) != (8, 8):
            # fvcore counts bilinear resizing 4/output: kernels and embeddings, C·(H+W) each
            want += 4 * 2 * c * (h + w)
        assert fa.total() == want


def test_onnx_export_matches_off_the_nominal_size():
    ort = pytest.importorskip("onnxruntime")
    sd = _random_authors_state(32, 8, 64, True, True, seed=3)
    block = block_from_official("gcc", sd)
    for shape in ((1, 32, 8, 8), (1, 32, 12, 6)):
        x = torch.randn(shape)
        buf = io.BytesIO()
        torch.onnx.export(block, (x,), buf, dynamo=False, opset_version=17)
        sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            assert np.abs(got - block(x).numpy()).max() < 1e-4


def test_gcc_preset_meta_kernel_follows_the_nominal_resolution():
    cfg = get_preset("edgevit_xs_gcc")
    model = build(cfg.replace(num_classes=10)).eval()
    blk = model.stages[1].blocks[0]
    assert isinstance(blk, GCCBlock)
    assert (blk.gcc1_h.meta_size, blk.gcc1_w.meta_size) == (28, 28)
    assert model.stages[2].blocks[0].gcc1_h.meta_size == 14
    rect = build(cfg.replace(resolution=(256, 192), num_classes=10))
    assert (
        rect.stages[2].blocks[0].gcc1_h.meta_size,
        rect.stages[2].blocks[0].gcc1_w.meta_size,
    ) == (16, 12)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 96)).shape == (1, 10)
    # params: the XS preset with stages 2 and 3 swapped for GCC blocks, counted exactly
    assert count_cost(cfg).params == sum(p.numel() for p in build(cfg).parameters())
    with pytest.raises(ConfigError, match="odd"):
        StageConfig(depth=1, width=33, block="gcc")
