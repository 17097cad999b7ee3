"""``onnxruntime``: export to ONNX and time ONNX Runtime's CPU execution provider.

This is the deployed-graph view: the same file a phone or board would run, with ONNX Runtime's
graph optimisations (constant folding, operator fusion) applied. The export itself is
:func:`edgeexplore.models.export.export_onnx`, the project's only ONNX exporter. ``measure``
also takes the path of an ONNX file instead of a model (``edgeexplore export`` times its output
that way); a float16 graph gets a float16 input.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .torch_cpu import TorchCPUBackend


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

        from ..models.export import export_onnx

        with tempfile.TemporaryDirectory(prefix="edgeexplore-onnx-") as tmp:
            if isinstance(model, (str, Path)):
                path = Path(model)
            else:
                path = Path(tmp) / "model.onnx"
                export_onnx(model, example, path,
                            exporter=self.options.get("exporter", "auto"))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.log_severity_level = 3
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        inp = session.get_inputs()[0]
        x = example.numpy()
        feed = {inp.name: x.astype("float16") if inp.type == "tensor(float16)" else x}

        def run() -> Any:
            return session.run(None, feed)

        return run
