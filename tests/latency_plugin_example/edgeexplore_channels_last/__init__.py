"""An example third-party latency backend: eager PyTorch with channels-last memory format.

Convolution-heavy networks often run faster with NHWC tensors on CPUs; this backend times that
variant. It reuses edgeexplore's torch-cpu sampling (warm-up, stable-median stopping, statistics)
by subclassing it and overriding only how the model and input are prepared; a backend may also be
written from scratch, as long as it has ``name``, ``available()``, ``describe_device()`` and
``measure(model, input_shape) -> Measurement``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgeexplore.latency.torch_cpu import TorchCPUBackend


class ChannelsLastBackend(TorchCPUBackend):
    name = "torch-cpu-cl"

    def available(self) -> tuple[bool, str]:
        ok, why = super().available()
        return ok, f"{why}, channels-last"

    def prepare(self, model: Any, example: Any) -> Callable[[], Any]:
        import torch

        model = model.eval().to(memory_format=torch.channels_last)
        x = example.contiguous(memory_format=torch.channels_last)

        def run() -> Any:
            with torch.inference_mode():
                return model(x)

        return run
