"""edgeexplore: architecture search and ablation for efficient vision backbones.

``import edgeexplore`` makes our presets available to ``timm.create_model("edgevit_xxs")``
without paying for torch and timm up front (timm's import alone pulls in torchvision and
torch._dynamo, several seconds): if timm is already imported, :mod:`edgeexplore.models` (which
registers the presets) is imported now; otherwise it is imported right after timm's own import
finishes. Light modules such as :mod:`edgeexplore.config` therefore stay torch-free.
Submodules (``edgeexplore.models``, ``edgeexplore.cost``, ...) also load on first attribute use.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Any


class _RegisterAfterTimm(importlib.abc.MetaPathFinder):
    """One-shot import hook: once ``timm`` has been executed, import edgeexplore.models."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "timm":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # one shot, and no recursion into ourselves below
        spec = importlib.util.find_spec("timm")
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _ThenRegister(spec.loader)
        return spec


class _ThenRegister(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def __getattr__(self, name: str) -> Any:  # resource readers etc. of the real loader
        return getattr(self._loader, name)

    def create_module(self, spec: Any) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        importlib.import_module(f"{__name__}.models")


def __getattr__(name: str) -> ModuleType:
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


if "timm" in sys.modules:
    from . import models  # noqa: F401  (registers the presets with timm)
elif not any(isinstance(f, _RegisterAfterTimm) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterTimm())
