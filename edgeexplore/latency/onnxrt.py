"""``onnxruntime``: export to ONNX and time ONNX Runtime's CPU execution provider.

This is the deployed-graph view: the same file a phone or board would run, with ONNX Runtime's
graph optimisations (constant folding, operator fusion) applied. :func:`export_onnx` is shared
with the ``command`` backend.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import EdgeExploreError
from .torch_cpu import TorchCPUBackend

EXPORTERS = ("auto", "torchscript", "dynamo")


def export_onnx(
    model: Any, input_shape: tuple[int, ...], path: str | Path, exporter: str = "auto"
) -> Path:
    """Write ``model`` (eval mode, fixed ``input_shape``) to ``path`` as a self-contained ONNX file.

    ``auto`` tries the TorchScript-based exporter first (about 0.5 s for an EdgeViT-XXS, against
    ~6 s for the Dynamo exporter), then Dynamo if that fails.
    """
    import torch

    if exporter not in EXPORTERS:
        raise EdgeExploreError(f"exporter must be one of {', '.join(EXPORTERS)}, not {exporter!r}")
    path = Path(path)
    model.eval()
    example = torch.randn(*input_shape)
    order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    errors = []
    for kind in order:
        try:
            # The exporters print progress and deprecation notes; a timing run should stay quiet.
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                    torch.no_grad():
                warnings.simplefilter("ignore")
                if kind == "torchscript":
                    torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=17,
                                      input_names=["input"], output_names=["output"])
                else:
                    torch.onnx.export(model, (example,), str(path), dynamo=True, opset_version=18,
                                      input_names=["input"], output_names=["output"],
                                      external_data=False)
            return path
        except Exception as e:  # noqa: BLE001  (each exporter fails differently; all reported)
            errors.append(f"{kind}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    raise EdgeExploreError(f"ONNX export failed ({'; '.join(errors)})")


class OnnxRuntimeBackend(TorchCPUBackend):
    """ONNX Runtime, CPU execution provider, all graph optimisations, fixed intra-op threads."""

    name = "onnxruntime"
    extra_settings = ("exporter",)

    def available(self) -> tuple[bool, str]:
        try:
            import onnxruntime as ort
        except ImportError as e:
            return False, f"onnxruntime is not installed ({e})"
        if "CPUExecutionProvider" not in ort.get_available_providers():
            return False, "onnxruntime has no CPUExecutionProvider"
        return True, f"{self.describe_device()['cpu']}, onnxruntime {ort.__version__} CPU"

    def describe_device(self) -> dict[str, Any]:
        d = super().describe_device()
        try:
            import onnxruntime as ort

            d["onnxruntime"] = ort.__version__
        except ImportError:
            pass
        return d

    def prepare(self, model: Any, example: Any) -> Callable[[], Any]:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory(prefix="edgeexplore-onnx-") as tmp:
            path = export_onnx(model, tuple(example.shape), Path(tmp) / "model.onnx",
                               self.options.get("exporter", "auto"))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.log_severity_level = 3
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        feed = {name: example.numpy()}

        def run() -> Any:
            return session.run(None, feed)

        return run
