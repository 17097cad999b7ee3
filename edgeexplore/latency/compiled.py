"""Graph-mode CPU backends: ``torchscript`` (traced, frozen TorchScript) and ``torch-compile``.

Both time the model after PyTorch has removed Python overhead and folded constants, which is
closer to what a deployed graph costs than eager mode.

* ``torchscript``: ``torch.jit.trace`` + ``torch.jit.freeze`` + ``optimize_for_inference``.
  Preparation takes well under a second, it works on every block kind (our blocks have no
  data-dependent control flow, so tracing is exact; the tests check outputs match eager), and it
  is the one to use inside a search. PyTorch marks TorchScript deprecated; its warnings are
  silenced here because the graph it produces is still correct and fast.
* ``torch-compile``: ``torch.compile`` (Inductor, generating C++ for the CPU). It also works on
  every block kind but compiling costs tens of seconds to a minute per architecture on a small
  machine (and needs a C++ compiler), so it suits final measurements of a few candidates, not
  per-trial timing.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from typing import Any

from .torch_cpu import TorchCPUBackend


class TorchScriptBackend(TorchCPUBackend):
    """Traced and frozen TorchScript graph on the CPU."""

    name = "torchscript"

    def available(self) -> tuple[bool, str]:
        import torch

        if not hasattr(torch, "jit") or not hasattr(torch.jit, "freeze"):
            return False, f"torch {torch.__version__} has no TorchScript freezing"
        return True, f"{self.describe_device()['cpu']}, TorchScript (torch {torch.__version__})"

    def prepare(self, model: Any, example: Any) -> Callable[[], Any]:
        import torch

        model.eval()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # deprecation and tracer notes (see module docstring)
            graph = torch.jit.trace(model, example, check_trace=False)
            graph = torch.jit.optimize_for_inference(torch.jit.freeze(graph))

        def run() -> Any:
            with torch.no_grad():
                return graph(example)

        return run


class TorchCompileBackend(TorchCPUBackend):
    """``torch.compile`` (Inductor) on the CPU. Slow to prepare; see the module docstring."""

    name = "torch-compile"
    extra_settings = ("mode",)

    def available(self) -> tuple[bool, str]:
        import torch

        if not hasattr(torch, "compile"):
            return False, f"torch {torch.__version__} has no torch.compile"
        if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
            return False, "Inductor needs a C++ compiler (g++ or clang++) on PATH"
        return True, (
            f"{self.describe_device()['cpu']}, Inductor (torch {torch.__version__}); "
            "compiling takes ~1 min per model"
        )

    def prepare(self, model: Any, example: Any) -> Callable[[], Any]:
        import torch

        model.eval()
        # Forget graphs of earlier models: a search compiles hundreds and would otherwise hit
        # Dynamo's recompilation limit and fall back to eager silently.
        torch._dynamo.reset()
        compiled = torch.compile(model, mode=self.options.get("mode"), dynamic=False)

        def run() -> Any:
            with torch.inference_mode():
                return compiled(example)

        run()  # compile now, so compilation is not counted as a warm-up sample
        return run
