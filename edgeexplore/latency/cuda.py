"""``cuda``: GPU latency with CUDA events, synchronised around every sample.

Kernel launches are asynchronous, so wall-clock time around ``model(x)`` measures the launch, not
the work. Each sample records a start and an end event on the current stream and synchronises on
the end event before reading the elapsed time. Energy comes from NVML's total-energy counter
when nvidia-ml-py is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import EdgeExploreError
from .torch_cpu import TorchCPUBackend


class CudaBackend(TorchCPUBackend):
    """Eager PyTorch on a CUDA GPU (``device=0`` by default), fp32 unless ``half=True``."""

    name = "cuda"
    extra_settings = ("device", "half")

    def _index(self) -> int:
        return int(self.options.get("device", 0))

    def available(self) -> tuple[bool, str]:
        import torch

        if torch.version.cuda is None:
            return False, f"this torch build ({torch.__version__}) has no CUDA support"
        if not torch.cuda.is_available():
            return False, "no CUDA GPU is visible here (torch.cuda.is_available() is False)"
        if self._index() >= torch.cuda.device_count():
            n = torch.cuda.device_count()
            return False, f"GPU {self._index()} does not exist ({n} visible)"
        return True, f"{torch.cuda.get_device_name(self._index())}, CUDA {torch.version.cuda}"

    def describe_device(self) -> dict[str, Any]:
        import torch

        d = super().describe_device()
        d["cuda"] = torch.version.cuda
        if torch.cuda.is_available() and self._index() < torch.cuda.device_count():
            props = torch.cuda.get_device_properties(self._index())
            d["gpu"] = props.name
            d["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
            d["cudnn"] = torch.backends.cudnn.version()
        return d

    def _energy_meter(self) -> tuple[Any, str | None]:
        if self.energy == "off":
            return None, "energy measurement switched off"
        from .energy import gpu_meter

        meter, why = gpu_meter(self._index())
        if meter is None and self.energy == "on":
            raise EdgeExploreError(f"energy was requested but is {why}")
        return meter, (None if meter is not None else why)

    def make_input(self, input_shape: tuple[int, ...]) -> Any:
        x = super().make_input(input_shape).to(f"cuda:{self._index()}")
        return x.half() if self.options.get("half") else x

    def prepare(self, model: Any, example: Any) -> Callable[[], Any]:
        import torch

        dev = torch.device(f"cuda:{self._index()}")
        model = model.to(dev).eval()
        if self.options.get("half"):
            model = model.half()

        def run() -> Any:
            with torch.inference_mode():
                return model(example)

        return run

    def timer(self) -> Callable[[Callable[[], Any]], float]:
        import torch

        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)

        def timed(fn: Callable[[], Any]) -> float:
            start.record()
            fn()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))

        return timed
