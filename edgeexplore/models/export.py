"""ONNX export of a backbone.

torch 2.15 still ships the TorchScript-based exporter (``dynamo=False``); it exports our blocks
in about a second and the graphs run in ONNX Runtime. The dynamo exporter also works but takes
5-10× longer, so it is only the fallback when the TorchScript path fails.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import EdgeExploreError

OPSET = 17


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: str | Path | None = None,
    opset: int = OPSET,
) -> bytes:
    """Export ``model`` (put in eval mode) for the fixed input shape of ``example``; returns
    the serialised model and also writes it to ``path`` when given."""
    model = model.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # tracer warnings about shape arithmetic are expected: the export is for one shape
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model, (example,), buf, dynamo=False, opset_version=opset,
                input_names=["input"], output_names=["output"],
            )
            data = buf.getvalue()
        except Exception as legacy_error:  # noqa: BLE001 - any failure: try the dynamo exporter
            try:
                program = torch.onnx.export(model, (example,), dynamo=True, verbose=False)
                data = program.model_proto.SerializeToString()
            except Exception as e:
                raise EdgeExploreError(
                    f"ONNX export failed ({type(legacy_error).__name__}: {legacy_error}; dynamo "
                    f"exporter: {type(e).__name__}: {e})"
                ) from e
    if path is not None:
        Path(path).write_bytes(data)
    return data
