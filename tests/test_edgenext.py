"""EdgeNeXt: SDTA fixture, timm equivalence of the presets, cost, ONNX, config."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import timm
import torch
from click.testing import CliRunner

from edgeexplore.cli import cli
from edgeexplore.config import ArchConfig, ConfigError, StageConfig, get_preset
from edgeexplore.cost import count_cost
from edgeexplore.models import block_from_official, build, from_timm_edgenext
from edgeexplore.models.edgenext import SDTABlock, split_sizes

SIZES = {
    # preset: (timm params, fvcore @256 of timm's model from the reference README, last width)
    "edgenext_xx_small": (1_327_216, 261_928_200, 168),
    "edgenext_x_small": (2_336_804, 539_774_400, 192),
    "edgenext_small": (5_586_832, 1_263_270_512, 304),
}


def _perturb(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial weights: layer scales near 1 (at 1e-6 a broken block would still match)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "gamma" in name or "temperature" in name:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


# -- SDTA against the authors' block --------------------------------------------------------


def test_sdta_fixture_reproduces_the_authors_outputs(shared_dir):
    fx = torch.load(shared_dir / "reference" / "sdta_block.pt", weights_only=True)
    cfg = fx["config"]
    block = block_from_official(
        "sdta",
        fx["state_dict"],
        dim=cfg["dim"],
        scales=cfg["scales"],
        num_heads=cfg["heads"],
        use_pos_emb=cfg["pos_emb"],
        expan_ratio=cfg["mlp_ratio"],
    )
    assert sum(p.numel() for p in block.parameters()) == 100_572
    sizes = []
    for case in fx["cases"]:
        with torch.no_grad():
            out = block(case["input"])
        assert (out - case["output"]).abs().max().item() < 1e-4
        sizes.append(tuple(case["input"].shape[2:]))
    assert sizes == [(14, 14), (16, 12)]
    # the fixture's own metadata names are accepted as aliases
    again = block_from_official("sdta", fx["state_dict"], **cfg)
    with torch.no_grad():
        assert torch.equal(again(fx["cases"][1]["input"]), block(fx["cases"][1]["input"]))


def _authors_sdta_state(timm_block: torch.nn.Module) -> dict[str, torch.Tensor]:
    # timm's SplitTransposeBlock uses the authors' names except for the MLP
    out = {}
    for k, v in timm_block.state_dict().items():
        out[k.replace("mlp.fc1.", "pwconv1.").replace("mlp.fc2.", "pwconv2.")] = v
    return out


@pytest.mark.parametrize(
    "dim,scales,heads,pos,ratio,size",
    [(64, 4, 8, False, 3, (6, 10)), (100, 3, 4, True, 4, (7, 7)), (48, 2, 2, True, 2, (5, 9))],
)
def test_sdta_other_configurations_match_timm(dim, scales, heads, pos, ratio, size):
    from timm.models.edgenext import SplitTransposeBlock

    torch.manual_seed(dim)
    ref = SplitTransposeBlock(
        dim, num_scales=scales, num_heads=heads, expand_ratio=ratio, use_pos_emb=pos
    ).eval()
    _perturb(ref, dim)
    state = _authors_sdta_state(ref)
    ours = block_from_official(
        "sdta", state, dim=dim, scales=scales, num_heads=heads, use_pos_emb=pos, expan_ratio=ratio
    )
    # arguments left out are read off the state dict
    inferred = block_from_official("sdta", state)
    x = torch.randn(1, dim, *size)
    with torch.no_grad():
        want = ref(x)
        assert (ours(x) - want).abs().max().item() < 1e-5
        assert (inferred(x) - want).abs().max().item() < 1e-5


def test_sdta_conversion_errors_are_clear():
    block = SDTABlock(32, scales=2, num_heads=4)
    state = {
        k.replace("mlp.fc", "pwconv").replace("pos_embed.proj", "pos_embd.token_projection"): v
        for k, v in block.state_dict().items()
    }
    with pytest.raises(ConfigError, match="num_heads=8 but the state dict says 4"):
        block_from_official("sdta", state, num_heads=8)
    with pytest.raises(ConfigError, match="unknown official block kind"):
        block_from_official("mbconv", state)
    with pytest.raises(ConfigError, match="not an EdgeNeXt SDTAEncoder"):
        block_from_official("sdta", {"foo": torch.zeros(1)})


def test_split_sizes_are_explicit_and_reject_empty_groups():
    assert split_sizes(88, 3) == [30, 30, 28]
    assert split_sizes(168, 4) == [42, 42, 42, 42]
    with pytest.raises(ConfigError, match="at least 2"):
        split_sizes(64, 1)
    with pytest.raises(ConfigError, match="last group would be empty"):
        split_sizes(9, 4)


# -- whole presets against timm -----------------------------------------------------------


@pytest.mark.parametrize("name", list(SIZES))
def test_presets_equal_timm_after_conversion(name):
    params, _, _ = SIZES[name]
    torch.manual_seed(0)
    ref = timm.create_model(name).eval()
    _perturb(ref)
    ours = from_timm_edgenext(ref.state_dict(), name)
    assert sum(p.numel() for p in ours.parameters()) == params
    # without a preset the architecture is read off the checkpoint, and it is the preset
    inferred = from_timm_edgenext(ref.state_dict())
    assert inferred.arch.hash == get_preset(name).hash
    assert sum(p.numel() for p in build(get_preset(name)).parameters()) == params
    for shape in ((1, 3, 64, 64), (1, 3, 64, 96)):
        x = torch.randn(shape)
        with torch.no_grad():
            assert (ours(x) - ref(x)).abs().max().item() < 1e-5


def test_timm_checkpoint_with_other_class_count_and_wrong_arch():
    ref = timm.create_model("edgenext_xx_small", num_classes=10).eval()
    ours = from_timm_edgenext(ref.state_dict(), "edgenext_xx_small")
    assert ours.arch.num_classes == 10
    with pytest.raises(ConfigError, match="does not fit"):
        from_timm_edgenext(ref.state_dict(), "edgenext_x_small")
    with pytest.raises(ConfigError, match="'edgenext' macro"):
        from_timm_edgenext(ref.state_dict(), "edgevit_xxs")


def test_measure_cli_reports_timm_parameter_count():
    res = CliRunner().invoke(cli, ["measure", "edgenext_xx_small", "--no-latency", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output[res.output.index("{") :])
    assert data["params"] == 1_327_216
    assert data["flops"] == 261_928_200  # fvcore on timm's model (reference README)


# -- cost ------------------------------------------------------------------------------------


def test_fvcore_counts_equal_timm():
    for name in ("edgenext_x_small", "edgenext_small"):
        _, flops, _ = SIZES[name]
        assert count_cost(get_preset(name)).flops == flops


def test_sdta_flops_match_the_formula():
    from fvcore.nn import FlopCountAnalysis

    c, h, w, heads, scales, hidden = 48, 6, 10, 4, 3, 192
    block = SDTABlock(c, scales=scales, num_heads=heads, mlp_ratio=hidden / c).eval()
    fa = FlopCountAnalysis(block, torch.randn(1, c, h, w))
    fa.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    n = h * w
    convs = sum(g * n * 9 for g in split_sizes(c, scales)[:-1])
    pos = 64 * c * n
    xca = 5 * c * n + 3 * c * c * n + 2 * (c * c * n // heads) + c * c * n
    mlp = 5 * c * n + 2 * c * hidden * n
    assert fa.total() == convs + pos + xca + mlp


# -- export, config ---------------------------------------------------------------------------


def test_onnx_export_runs_in_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build(get_preset("edgenext_xx_small").replace(num_classes=10)).eval()
    _perturb(model)
    x = torch.randn(1, 3, 64, 96)
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=17)
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert np.abs(got - want).max() < 1e-4


def test_edgenext_stage_options_are_validated_and_normalised():
    with pytest.raises(ConfigError, match="exceeds the stage depth"):
        StageConfig(depth=2, width=48, block="edgenext", options={"global_blocks": 3})
    with pytest.raises(ConfigError, match="cannot be split into 4 scales"):
        StageConfig(depth=1, width=9, heads=1, block="edgenext", options={"scales": 4})
    # without SDTA blocks the SDTA options do not change the network, so they do not change the hash
    a = StageConfig(depth=2, width=48, block="edgenext", options={"global_blocks": 0, "scales": 3})
    b = StageConfig(depth=2, width=48, block="edgenext", options={"global_blocks": 0})
    assert a == b
    cfg = ArchConfig.from_json(get_preset("edgenext_xx_small").to_json())
    assert cfg.hash == get_preset("edgenext_xx_small").hash


def test_hybrid_sdta_preset_builds_and_runs_non_square():
    cfg = get_preset("edgevit_xs_sdta").replace(num_classes=10)
    model = build(cfg).eval()
    kinds = [type(b).__name__ for b in model.stages[2].blocks]
    assert kinds == ["ConvEncoder", "ConvEncoder", "SDTABlock"]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 96)).shape == (1, 10)
