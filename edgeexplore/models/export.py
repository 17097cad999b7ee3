"""Export a backbone to a deployable graph: ONNX, TorchScript or a ``torch.export`` program.

This is the one ONNX exporter of the project (the latency backends call it too).

* **onnx**: torch 2.15 still ships the TorchScript-based exporter (``dynamo=False``); it
  exports our blocks in about a second and the graphs run in ONNX Runtime. The dynamo exporter
  also works but takes 5-10× longer, so ``exporter="auto"`` uses it only when the first fails.
* **torchscript**: ``torch.jit.script`` (every built-in block kind scripts, so the graph keeps
  any batch and input size and the input check), frozen for inference; a plug-in block that
  does not script falls back to ``torch.jit.trace`` at the example's shape.
* **exported-program**: ``torch.export`` (an ATen graph, the input of ExecuTorch and AOTInductor),
  saved with ``torch.export.save``.

:func:`export` writes any of them, from the model's deployable form
(:func:`~edgeexplore.models.fuse_for_inference`), and reads the file back to check it against
the eager model as built.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import EdgeExploreError
from .fuse import fuse_for_inference

FORMATS = ("onnx", "torchscript", "exported-program")
EXPORTERS = ("auto", "torchscript", "dynamo")
#: default opsets: the TorchScript-based exporter's tested one, and the dynamo exporter's minimum
OPSET = 17
DYNAMO_OPSET = 18
#: largest batch a dynamic-batch graph promises to accept (torch.export needs a bound)
MAX_BATCH = 4096


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # exporters print progress, deprecation notes and tracer warnings about shape arithmetic
    # (expected: an ONNX trace is for one input size)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        yield


def _example(example: torch.Tensor | tuple[int, ...]) -> torch.Tensor:
    if isinstance(example, torch.Tensor):
        return example
    return torch.randn(*example, generator=torch.Generator().manual_seed(0))


def export_onnx(
    model: nn.Module,
    example: torch.Tensor | tuple[int, ...],
    path: str | Path | None = None,
    *,
    opset: int | None = None,
    exporter: str = "auto",
    dynamic_batch: bool = False,
) -> bytes:
    """Export ``model`` (put in eval mode) at the shape of ``example`` (a tensor or a shape);
    returns the serialised ONNX model and also writes it to ``path`` when given. With
    ``dynamic_batch`` the batch dimension is symbolic (``batch``); otherwise all is fixed."""
    if exporter not in EXPORTERS:
        raise EdgeExploreError(f"exporter must be one of {', '.join(EXPORTERS)}, not {exporter!r}")
    model = model.eval()
    x = _example(example)
    order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    errors = []
    for kind in order:
        try:
            with _quiet():
                data = _onnx_bytes(model, x, kind, opset, dynamic_batch)
            break
        except Exception as e:  # noqa: BLE001 - each exporter fails differently; all reported
            errors.append(f"{kind}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    else:
        raise EdgeExploreError(f"ONNX export failed ({'; '.join(errors)})")
    if path is not None:
        Path(path).write_bytes(data)
    return data


def _onnx_bytes(
    model: nn.Module, x: torch.Tensor, kind: str, opset: int | None, dynamic_batch: bool
) -> bytes:
    names = {"input_names": ["input"], "output_names": ["output"]}
    if kind == "torchscript":
        buf = io.BytesIO()
        axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=opset or OPSET,
                          dynamic_axes=axes, **names)
        return buf.getvalue()
    program = torch.onnx.export(
        model, (x,), dynamo=True, opset_version=opset or DYNAMO_OPSET, verbose=False,
        dynamic_shapes=_dynamic_batch(dynamic_batch), **names,
    )
    return program.model_proto.SerializeToString()


def _dynamic_batch(dynamic_batch: bool) -> tuple[dict[int, Any]] | None:
    return ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},) if dynamic_batch else None


def export_torchscript(model: nn.Module, example: torch.Tensor, path: str | Path) -> str:
    """Script (or, failing that, trace) and freeze ``model``; save it to ``path``. Returns how
    it was captured: ``"script"`` (any input size) or ``"trace"`` (the example's size)."""
    model = model.eval()
    with _quiet():
        try:
            graph, how = torch.jit.script(model), "script"
        except Exception:  # noqa: BLE001 - a plug-in block that TorchScript cannot compile
            graph, how = torch.jit.trace(model, example, check_trace=False), "trace"
        torch.jit.save(torch.jit.freeze(graph), str(path))
    return how


def export_program(
    model: nn.Module, example: torch.Tensor, path: str | Path, dynamic_batch: bool = False
) -> None:
    """``torch.export`` the model at the example's shape (batch symbolic with
    ``dynamic_batch``) and save the program to ``path`` (conventionally ``.pt2``)."""
    model = model.eval()
    with _quiet():
        try:
            program = torch.export.export(
                model, (example,), dynamic_shapes=_dynamic_batch(dynamic_batch)
            )
        except Exception as e:  # noqa: BLE001 - dynamo's errors are long; keep the first line
            raise EdgeExploreError(f"torch.export failed: {str(e).splitlines()[0]}") from None
        torch.export.save(program, str(path))


class Loaded(nn.Module):
    """An exported file read back as a module on float32 tensors: the input is cast to the
    graph's dtype (float16 graphs), the output back to float32. The loaded graph is kept out of
    the module tree, because ``torch.export``'s module refuses ``.eval()``."""

    def __init__(self, run: Callable[[torch.Tensor], torch.Tensor], dtype: torch.dtype) -> None:
        super().__init__()
        object.__setattr__(self, "run", run)  # not registered as a submodule (see above)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x.to(self.dtype)).float()


def load_exported(fmt: str, path: str | Path, fp16: bool = False) -> Loaded:
    """Read an exported file back (ONNX runs in ONNX Runtime's CPU provider)."""
    dtype = torch.float16 if fp16 else torch.float32
    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # float16 graphs log a warning per unfoldable constant
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run_onnx(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {name: x.numpy()})[0])

        return Loaded(run_onnx, dtype)
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load is deprecated, still supported
            return Loaded(torch.jit.load(str(path)), dtype)
    return Loaded(torch.export.load(str(path)).module(), dtype)


@dataclass
class ExportReport:
    """What :func:`export` wrote and how closely the file reproduces eager PyTorch."""

    path: Path
    fmt: str
    #: largest |exported - eager| over the checked inputs (eager in float32)
    max_abs_diff: float
    #: the batch sizes checked (two when the batch is dynamic)
    batches: tuple[int, ...]
    notes: list[str]


def export(
    model: nn.Module,
    input_shape: tuple[int, int, int, int],
    path: str | Path,
    fmt: str = "onnx",
    *,
    dynamic_batch: bool = False,
    opset: int | None = None,
    fp16: bool = False,
    check_inputs: int = 2,
) -> ExportReport:
    """Export ``model`` for inputs of ``input_shape`` to ``path`` in format ``fmt``, read the
    file back and compare it with eager float32 PyTorch on ``check_inputs`` random inputs (and
    a second batch size when ``dynamic_batch``)."""
    if fmt not in FORMATS:
        raise EdgeExploreError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if opset is not None and fmt != "onnx":
        raise EdgeExploreError(f"--opset applies to ONNX only, not to {fmt}")
    path = Path(path)
    if not path.parent.is_dir():
        raise EdgeExploreError(f"the output folder {path.parent} does not exist")
    reference = model.eval()
    # the deployable form is what ships (see models.fuse); checking it against the model as
    # built also checks the fusion
    model = fuse_for_inference(reference)
    dtype = torch.float16 if fp16 else torch.float32
    gen = torch.Generator().manual_seed(0)
    # torch.export (and the dynamo ONNX exporter) specialise a batch of 1 to a constant: a
    # dynamic batch is captured at 2
    capture = (max(2, input_shape[0]), *input_shape[1:]) if dynamic_batch else input_shape
    example = torch.randn(*capture, generator=gen)
    notes: list[str] = []
    if model is not reference:
        notes.append("fused for inference (BatchNorms and position-encoding residuals folded "
                     "into convs); compared with the model as built")
    if fp16:
        model = _half_copy(model, example)
        notes.append("weights and input in float16; compared with float32 eager")
    example = example.to(dtype)
    if fmt == "onnx":
        export_onnx(model, example, path, opset=opset, dynamic_batch=dynamic_batch)
        _check_onnx(path, fp16)
    elif fmt == "torchscript":
        how = export_torchscript(model, example, path)
        notes.append("scripted: any batch and input size" if how == "script"
                     else "traced: fixed to the example's shape")
    else:
        export_program(model, example, path, dynamic_batch)
    try:
        run = load_exported(fmt, path, fp16)
    except Exception as e:  # noqa: BLE001 - ONNX Runtime and torch.jit raise their own types
        raise EdgeExploreError(f"the exported {fmt} file {path} does not load: {e}") from None
    batches = (input_shape[0], capture[0] + 1) if dynamic_batch else (input_shape[0],)
    worst = 0.0
    for b in batches:
        for _ in range(check_inputs):
            x = torch.randn(b, *input_shape[1:], generator=gen)
            with torch.no_grad():
                ref = reference(x)
                try:
                    out = run(x)
                except Exception as e:  # noqa: BLE001 - e.g. a kernel ONNX Runtime lacks
                    raise EdgeExploreError(f"the exported {fmt} graph fails to run: {e}") from None
            worst = max(worst, (out - ref).abs().max().item())
    return ExportReport(path, fmt, worst, batches, notes)


def _half_copy(model: nn.Module, example: torch.Tensor) -> nn.Module:
    import copy

    half = copy.deepcopy(model).half()
    try:
        with torch.no_grad():
            half(example.half())
    except RuntimeError as e:
        raise EdgeExploreError(
            f"--fp16 is not supported for this model on the CPU: {str(e).splitlines()[0]}"
        ) from None
    return half


def _check_onnx(path: Path, fp16: bool) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # noqa: BLE001 - checker and shape inference raise several types
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if fp16:
            # e.g. LSA's masked attention: the exporter leaves a float32 node in a float16 graph
            raise EdgeExploreError(
                f"--fp16 ONNX export is not supported for this architecture (the exporter "
                f"mixes float16 and float32: {reason})"
            ) from None
        raise EdgeExploreError(f"the exported ONNX graph fails onnx.checker: {reason}") from None


def onnx_op_types(path: str | Path) -> dict[str, int]:
    """How many nodes of each op type the ONNX graph at ``path`` has (most frequent first)."""
    from collections import Counter

    import onnx

    counts = Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
