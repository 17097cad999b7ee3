"""Loading the authors' EdgeViT weights: fixtures, a random official-shaped round trip, the CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edgeexplore.cli import cli
from edgeexplore.config import ArchConfig
from edgeexplore.errors import ConfigError, EdgeExploreError
from edgeexplore.models import (
    build,
    convert_official_state_dict,
    from_official,
    official_arch,
    to_official,
)

CUSTOM_TINY = {
    "depth": [2, 1, 2, 1], "embed_dim": [16, 32, 64, 96], "head_dim": 16, "mlp_ratio": [2, 3, 4, 2],
    "qkv_bias": False, "sr_ratios": [4, 2, 2, 1], "img_size": 128, "num_classes": 10,
}
PORT = Path(__file__).resolve().parents[1] / "benchmarks" / "official_port.py"


def _port():
    """benchmarks/official_port.py: an independent line-by-line port of the authors' model."""
    spec = importlib.util.spec_from_file_location("official_port", PORT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fixture(shared_dir: Path, name: str) -> dict:
    path = shared_dir / "reference" / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize(
    "name, kwargs",
    [("edgevit_xxs.pt", {"depth": [1, 1, 3, 2], "embed_dim": [36, 72, 144, 288], "head_dim": 36}),
     ("custom_tiny.pt", CUSTOM_TINY)],
)
def test_fixture_logits(shared_dir, name, kwargs):
    fx = _fixture(shared_dir, name)
    model = from_official(fx["state_dict"], **kwargs)
    assert not model.training
    with torch.no_grad():
        out = model(fx["input"])
    assert (out - fx["logits"]).abs().max().item() < 1e-4
    # the inverse conversion gives back the authors' state dict exactly
    back = to_official(model)
    assert set(back) == set(fx["state_dict"])
    assert all(torch.equal(back[k], v) for k, v in fx["state_dict"].items())


def test_weights_fill_in_omitted_arguments(shared_dir):
    fx = _fixture(shared_dir, "custom_tiny.pt")
    model = from_official(fx["state_dict"], head_dim=16)
    arch = model.arch
    assert arch.depths == (2, 1, 2, 1) and arch.widths == (16, 32, 64, 96)
    assert [s.mlp_ratio for s in arch.stages] == [2, 3, 4, 2]
    assert [s.sample_rate for s in arch.stages] == [4, 2, 2, 1]
    assert arch.qkv_bias is False and arch.num_classes == 10


def _random_official(port, **kwargs) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(1)
    ref = port.EdgeVit(**kwargs).eval()
    with torch.no_grad():
        for name, t in ref.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 2.0)
            elif t.is_floating_point():
                t.normal_(0.0, 0.1)
    return ref, ref.state_dict()


@pytest.mark.parametrize("kwargs", [
    # edgevit_s shapes (5 heads in stage 3), and an odd configuration: sr 8 in stage 1,
    # per-stage MLP ratios with a fractional hidden width, qkv without bias, 96 px input
    {"depth": [1, 2, 5, 3], "embed_dim": [48, 96, 240, 384], "head_dim": 48, "num_classes": 100},
    {"depth": [1, 1, 1, 2], "embed_dim": [24, 40, 60, 80], "head_dim": 20,
     "mlp_ratio": [1.5, 3.3, 2, 4], "qkv_bias": False, "sr_ratios": [8, 2, 1, 1],
     "img_size": 96, "num_classes": 7},
])
def test_random_official_weights_match_the_authors_structure(kwargs):
    port = _port()
    ref, sd = _random_official(port, **kwargs)
    model = from_official(sd, **kwargs)
    x = torch.randn(2, 3, kwargs.get("img_size", 224), kwargs.get("img_size", 224))
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max().item() < 1e-4
    back = to_official(model)
    assert set(back) == set(sd) and all(torch.equal(back[k], v) for k, v in sd.items())


def test_official_shape_files_convert(shared_dir):
    """Every key of the authors' xxs/xs/s state dicts has a counterpart in our model."""
    for name, head_dim in (("edgevit_xxs", 36), ("edgevit_xs", 48), ("edgevit_s", 48)):
        path = shared_dir / "reference" / f"{name}_state_dict_shapes.txt"
        if not path.is_file():
            pytest.skip(f"{path} is absent")
        shapes = {}
        for line in path.read_text().splitlines():
            key, shape = line.split("\t")
            shapes[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
        sd = {k: torch.zeros(s) for k, s in shapes.items()}
        ours = convert_official_state_dict(sd)
        from edgeexplore.config import get_preset

        with torch.device("meta"):
            model = build(get_preset(name))
        own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert {k: tuple(v.shape) for k, v in ours.items()} == own, name


def test_loading_errors_name_the_problem():
    port = _port()
    kwargs = {"depth": [1, 1, 1, 1], "embed_dim": [8, 16, 16, 32], "head_dim": 8, "num_classes": 3}
    _, sd = _random_official(port, **kwargs)
    with pytest.raises(ConfigError, match="head_dim"):
        from_official(sd)
    broken = dict(sd)
    del broken["blocks3.0.SelfAttn.attn.proj.weight"]
    with pytest.raises(EdgeExploreError, match=r"missing .*global_attn\.attn\.proj\.weight"):
        from_official(broken, **kwargs)
    with pytest.raises(EdgeExploreError, match="not EdgeViT weights: extra.weight"):
        from_official({**sd, "extra.weight": torch.zeros(1)}, **kwargs)
    with pytest.raises(EdgeExploreError, match="wrong shape"):
        from_official(sd, **{**kwargs, "depth": [1, 1, 1, 1], "mlp_ratio": 2})
    with pytest.raises(ConfigError, match="qk_scale"):
        from_official(sd, **kwargs, qk_scale=0.1)
    ours = build(official_arch(**kwargs)).state_dict()  # our key names, not the authors'
    with pytest.raises(EdgeExploreError, match="do not look like the authors' EdgeViT"):
        from_official(ours, head_dim=8)
    # checkpoints wrapped by training scripts load too
    wrapped = {"model": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}
    assert from_official(wrapped, **kwargs).arch.num_classes == 3


def test_convert_command(shared_dir, tmp_path):
    fx = _fixture(shared_dir, "custom_tiny.pt")
    ckpt = tmp_path / "official.pth"
    torch.save({"state_dict": fx["state_dict"]}, ckpt)
    out = tmp_path / "ours.pt"
    result = CliRunner().invoke(
        cli, ["convert", str(ckpt), "--head-dim", "16", "--img-size", "128", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    arch = ArchConfig.load(out.with_suffix(".json"))
    assert arch.resolution == (128, 128) and arch.num_classes == 10
    model = build(arch)
    model.load_state_dict(torch.load(out, weights_only=True))
    with torch.no_grad():
        logits = model.eval()(fx["input"])
    assert (logits - fx["logits"]).abs().max().item() < 1e-4
    assert json.loads(out.with_suffix(".json").read_text())["stages"][0]["sample_rate"] == 4


def test_convert_command_needs_head_dim(shared_dir, tmp_path):
    fx = _fixture(shared_dir, "custom_tiny.pt")
    ckpt = tmp_path / "official.pth"
    torch.save(fx["state_dict"], ckpt)
    result = CliRunner().invoke(cli, ["convert", str(ckpt)])
    assert result.exit_code != 0
    assert "head-dim" in str(result.exception) or "head-dim" in result.output


def test_convert_refuses_a_preset_that_is_not_an_edgevit(shared_dir, tmp_path):
    ckpt = tmp_path / "official.pth"
    torch.save(_fixture(shared_dir, "custom_tiny.pt")["state_dict"], ckpt)
    result = CliRunner().invoke(cli, ["convert", str(ckpt), "--preset", "edgenext_small"])
    assert result.exit_code != 0
    assert "not one of the authors' EdgeViTs" in str(result.exception)


def test_convert_never_overwrites_the_checkpoint(shared_dir, tmp_path):
    ckpt = tmp_path / "official.pth"
    torch.save(_fixture(shared_dir, "custom_tiny.pt")["state_dict"], ckpt)
    before = ckpt.read_bytes()
    result = CliRunner().invoke(cli, ["convert", str(ckpt), "--head-dim", "16", "-o", str(ckpt)])
    assert result.exit_code != 0 and "is the checkpoint being converted" in str(result.exception)
    assert ckpt.read_bytes() == before
