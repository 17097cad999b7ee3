"""``edgeexplore export`` and :mod:`edgeexplore.models.export`: every format for one preset,
ONNX for every block kind, checkpoints, and bad input as one sentence."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from block_nets import NETS, RES, net, with_bn_statistics
from click.testing import CliRunner

from edgeexplore.cli import cli, main
from edgeexplore.config import PRESETS
from edgeexplore.models import build
from edgeexplore.models.export import export, load_exported, onnx_op_types

# ops every common edge runtime (ONNX Runtime Mobile, TensorRT, OpenVINO, TFLite converters,
# NCNN, MNN) implements; a GCC graph must stay within them (no circular Pad, no ScatterND)
COMMON_OPS = {
    "Add", "BatchNormalization", "Cast", "Concat", "Constant", "Conv", "ConvTranspose", "Div",
    "Erf", "Gather", "Gemm", "HardSigmoid", "HardSwish", "Identity", "LayerNormalization",
    "MatMul", "Mul", "ReduceMean", "Reshape", "Resize", "Shape", "Slice", "Softmax", "Split",
    "Squeeze", "Sub", "Transpose", "Unsqueeze",
}


def run_cli(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "exported-program"])
def test_every_format_for_a_preset(tmp_path, fmt):
    out = tmp_path / f"xxs.{fmt}"
    result = run_cli("export", "edgevit_xxs", "--format", fmt, "--resolution", str(RES),
                     "--dynamic-batch", "--no-time", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"-> {out} ({fmt}, dynamic batch, 3x{RES}x{RES}, float32" in result.output
    diff = float(result.output.split("max abs difference from eager PyTorch: ")[1].split()[0])
    assert diff < 1e-4
    if fmt == "onnx":
        onnx.checker.check_model(str(out), full_check=True)
        assert "ONNX ops: " in result.output and "Conv" in result.output
    else:
        assert "ONNX ops" not in result.output
    # the file runs on its own, at a batch other than the captured one
    loaded = load_exported(fmt, out)
    x = torch.randn(3, 3, RES, RES)
    with torch.no_grad():
        y = loaded(x)
    assert y.shape == (3, 1000) and torch.isfinite(y).all()


def test_export_times_the_file_with_the_matching_backend(tmp_path):
    for fmt, backend in (("onnx", "onnxruntime"), ("torchscript", "torch-cpu")):
        result = run_cli("export", "edgevit_xxs", "--format", fmt, "--resolution", str(RES),
                         "-o", str(tmp_path / f"m.{fmt}"))
        assert result.exit_code == 0, result.output
        latency = result.output.split("latency: ")[1]
        assert latency.startswith(f"{backend}: median ") and "batch 1" in latency


@pytest.mark.parametrize("name", list(NETS))
def test_onnx_for_every_block_kind(tmp_path, name):
    torch.manual_seed(0)
    model = with_bn_statistics(build(net(name)).eval())
    # 64×96 is off the nominal 64×64: GCC kernels are resized, LSA windows padded
    path = tmp_path / "m.onnx"
    report = export(model, (1, 3, RES, RES + 32), path, "onnx")
    assert report.max_abs_diff < 1e-4
    onnx.checker.check_model(str(path), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, RES, RES + 32)
    (out,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), atol=1e-4, rtol=1e-4)
    if name == "gcc":
        ops = onnx_op_types(path)
        assert set(ops) <= COMMON_OPS, set(ops) - COMMON_OPS
        # circular padding is a Concat of the map and its first rows/columns, then a valid Conv
        assert "Pad" not in ops and ops["Concat"] >= 4 and "Resize" in ops


def test_fp16_export_runs_in_float16(tmp_path):
    out = tmp_path / "half.onnx"
    result = run_cli("export", "edgevit_xxs", "--resolution", str(RES), "--fp16", "--no-time",
                     "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "float16" in result.output
    graph = onnx.load(str(out)).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16


@pytest.fixture
def checkpoint(tmp_path):
    cfg = PRESETS["edgevit_xxs"].replace(num_classes=10)
    torch.manual_seed(3)
    model = build(cfg).eval()
    path = tmp_path / "xxs.pt"
    torch.save({"model": model.state_dict()}, path)
    path.with_suffix(".json").write_text(cfg.to_json())
    return path, model


def test_checkpoint_export_reproduces_its_weights(tmp_path, checkpoint):
    path, model = checkpoint
    out = tmp_path / "xxs.onnx"
    result = run_cli("export", str(path), "--resolution", str(RES), "--no-time", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "weights from xxs.pt" in result.output
    x = torch.randn(1, 3, RES, RES)
    with torch.no_grad():
        torch.testing.assert_close(load_exported("onnx", out)(x), model(x), atol=1e-4, rtol=1e-4)


def _error(capsys, *args: str) -> str:
    assert main(["export", *args]) != 0
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err


def test_bad_input_is_one_sentence(tmp_path, capsys, checkpoint):
    path, _ = checkpoint
    out = str(tmp_path / "m.onnx")
    err = _error(capsys, "edgevit_xxs", "--format", "tflite", "-o", out)
    assert "'tflite' is not one of 'onnx', 'torchscript', 'exported-program'" in err
    err = _error(capsys, "edgevit_xxs", "-o", str(tmp_path / "nowhere" / "m.onnx"))
    assert err == f"Error: the output folder {tmp_path / 'nowhere'} does not exist"
    err = _error(capsys, str(path), "--arch", "edgevit_s", "--no-time", "-o", out)
    assert err.startswith(f"Error: {path} is not a checkpoint of edgevit_s: ")
    assert len(err.splitlines()) == 1
    official = tmp_path / "official.pth"
    torch.save({"patch_embed1.proj.weight": torch.zeros(1)}, official)
    err = _error(capsys, str(official), "--arch", "edgevit_xxs", "-o", out)
    assert "checkpoint of the authors' EdgeViT code; convert it first" in err
    err = _error(capsys, str(tmp_path / "missing.pt"), "-o", out)
    assert "is neither a preset, a CONFIG.json nor a checkpoint file" in err
    err = _error(capsys, "edgevit_xxs", "--format", "torchscript", "--opset", "13", "-o", out)
    assert err == "Error: --opset applies to --format onnx only, not torchscript"


def test_fp16_where_unsupported_is_one_sentence(tmp_path, capsys):
    # LSA's masked attention exports a float32 node into a float16 graph
    cfg = tmp_path / "lsa.json"
    cfg.write_text(json.dumps(net("lgl-official-k3-lsa").to_dict()))
    err = _error(capsys, str(cfg), "--fp16", "--no-time", "-o", str(tmp_path / "m.onnx"))
    assert err.startswith("Error: --fp16 ONNX export is not supported for this architecture")
    assert len(err.splitlines()) == 1
