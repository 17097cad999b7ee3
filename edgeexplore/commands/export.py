"""``edgeexplore export``: write a deployable graph of an architecture or a checkpoint.

A thin wrapper over :func:`edgeexplore.models.export.export`: it builds (or loads) the model,
exports it, prints how far the file's outputs are from eager PyTorch, the ONNX graph's op
types, and the file's latency with the matching backend (ONNX Runtime for ONNX, PyTorch for
the other two). torch is imported inside the command so ``--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError, EdgeExploreError

FORMATS = ("onnx", "torchscript", "exported-program")
#: the largest |exported - eager| accepted (float32 graphs, and float16 against float32 eager)
TOLERANCE = {False: 1e-3, True: 0.1}


def _is_arch(source: str) -> bool:
    from ..config import PRESETS

    return source in PRESETS or source.endswith(".json")


def _state_dict(path: Path) -> dict[str, Any]:
    from ..models.official import unwrap_checkpoint
    from .models import _load_checkpoint

    data = _load_checkpoint(path)
    try:  # a plain state dict, or one under "model" / "state_dict" / "model_ema"
        data = unwrap_checkpoint(data)
    except EdgeExploreError:
        data = {}
    if not data:
        raise EdgeExploreError(f"{path} holds no state dict")
    return data


def _fit_error(path: Path, arch_name: str, error: str, keys: list[str]) -> str:
    if any(k.startswith(("patch_embed1.", "blocks1.")) for k in keys):
        return (f"{path} is a checkpoint of the authors' EdgeViT code; convert it first "
                "(edgeexplore convert CHECKPOINT --preset ...)")
    lines = [ln.strip() for ln in error.splitlines()[1:] if ln.strip()]
    detail = lines[0] if lines else error.splitlines()[0]
    return f"{path} is not a checkpoint of {arch_name}: {detail[:300]}"


def load_source(source: str, arch: str | None, resolution: str | None) -> tuple[Any, str, str]:
    """(model in eval mode, a short description, the architecture's name) for ARCH|CHECKPOINT."""
    from ..config import resolve_arch
    from ..models import build

    if _is_arch(source):
        if arch is not None:
            raise ConfigError("--arch describes a CHECKPOINT's architecture; "
                              f"{source} is an architecture already")
        cfg = resolve_arch(source, resolution=resolution)
        return build(cfg).eval(), "random weights", source
    path = Path(source)
    if not path.exists():
        raise EdgeExploreError(f"{source} is neither a preset, a CONFIG.json nor a checkpoint file")
    if arch is None:
        beside = path.with_suffix(".json")
        if not beside.is_file():
            raise ConfigError(f"give --arch PRESET|CONFIG.json: {path} has no {beside.name} "
                              "beside it (edgeexplore convert writes one)")
        arch = str(beside)
    # the checkpoint fixes the architecture (a GCC meta kernel's length depends on the nominal
    # resolution); --resolution only sets the export's input size
    cfg = resolve_arch(arch)
    state = _state_dict(path)
    model = build(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise EdgeExploreError(_fit_error(path, arch, str(e), list(state))) from None
    return model.eval(), f"weights from {path.name}", arch


@click.command("export")
@click.argument("source", metavar="ARCH|CHECKPOINT")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="onnx", show_default=True,
              help="onnx (ONNX Runtime, edge runtimes), torchscript (scripted and frozen), "
                   "exported-program (torch.export, for ExecuTorch / AOTInductor).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write (its folder must exist).")
@click.option("--arch", default=None, metavar="PRESET|CONFIG.json",
              help="Architecture of a CHECKPOINT (default: the .json beside it).")
@click.option("--resolution", default=None, metavar="N|HxW",
              help="Input size (default: the architecture's, 224 for EdgeViT presets).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size of the example input.")
@click.option("--dynamic-batch", is_flag=True,
              help="Symbolic batch dimension (ONNX, exported-program; a scripted TorchScript "
                   "graph takes any batch anyway).")
@click.option("--opset", type=click.IntRange(min=7), default=None,
              help="ONNX opset (default 17).")
@click.option("--fp16", is_flag=True, help="Float16 weights and input.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Threads for the latency measurement.")
@click.option("--time/--no-time", "timing", default=True, show_default=True,
              help="Time the exported file with the matching latency backend.")
def export_cmd(
    source: str, fmt: str, output: Path, arch: str | None, resolution: str | None, batch: int,
    dynamic_batch: bool, opset: int | None, fp16: bool, threads: int, timing: bool,
) -> None:
    """Export an architecture (PRESET or CONFIG.json, random weights) or a CHECKPOINT (a state
    dict, e.g. written by ``edgeexplore convert``) and check the file against eager PyTorch.

    \b
    Examples:
      edgeexplore export edgevit_xxs -o xxs.onnx
      edgeexplore export xxs.pt --format torchscript -o xxs.ts
      edgeexplore export edgevit_xs_gcc --dynamic-batch --fp16 -o gcc16.onnx
    """
    from ..config import parse_resolution
    from ..models.export import export, onnx_op_types

    if not output.parent.is_dir():
        raise EdgeExploreError(f"the output folder {output.parent} does not exist")
    if opset is not None and fmt != "onnx":
        raise ConfigError(f"--opset applies to --format onnx only, not {fmt}")
    from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as max_opset

    if opset is not None and opset > max_opset:
        raise ConfigError(f"--opset must be at most {max_opset} (the newest this PyTorch's ONNX "
                          f"exporter writes), not {opset}")
    from ..latency.base import check_threads
    from ..latency.measure import MAX_BATCH

    if batch > MAX_BATCH:  # the example input is allocated whole
        raise ConfigError(f"--batch must be at most {MAX_BATCH}, not {batch}")
    check_threads(threads)  # even with --no-time: 99999 is a typo either way
    model, weights, name = load_source(source, arch, resolution)
    h, w = parse_resolution(resolution) if resolution is not None else model.arch.resolution
    shape = (batch, model.arch.in_chans, h, w)
    report = export(model, shape, output, fmt, dynamic_batch=dynamic_batch, opset=opset,
                    fp16=fp16)
    size_mb = output.stat().st_size / 1e6
    batch_text = "dynamic batch" if dynamic_batch else f"batch {batch}"
    click.echo(f"exported {name} ({weights}) -> {output} ({fmt}, {batch_text}, "
               f"{shape[1]}x{h}x{w}, {'float16' if fp16 else 'float32'}, {size_mb:.1f} MB)")
    for note in report.notes:
        click.echo(f"  {note}")
    checked = ", ".join(str(b) for b in report.batches)
    click.echo(f"  max abs difference from eager PyTorch: {report.max_abs_diff:.3g} "
               f"(random inputs, batch {checked})")
    if fmt == "onnx":
        ops = onnx_op_types(output)
        click.echo("  ONNX ops: " + ", ".join(f"{op} {n}" for op, n in ops.items()))
    tolerance = TOLERANCE[fp16]
    if not report.max_abs_diff <= tolerance:
        raise EdgeExploreError(
            f"the exported graph differs from eager PyTorch by {report.max_abs_diff:.3g} "
            f"(more than {tolerance:g}); the file was kept at {output}"
        )
    if timing:
        click.echo(f"  latency: {_time(fmt, output, shape, threads, fp16).summary()}")


def _time(fmt: str, path: Path, shape: tuple[int, ...], threads: int, fp16: bool) -> Any:
    from ..latency import get_backend
    from ..models.export import load_exported

    if fmt == "onnx":
        return get_backend("onnxruntime", threads=threads).measure(path, shape)
    return get_backend("torch-cpu", threads=threads).measure(load_exported(fmt, path, fp16), shape)


COMMANDS = [export_cmd]
