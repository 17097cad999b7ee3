"""Backend registry: the built-in backends plus any package's, via Python entry points.

A package registers a backend by declaring, in its ``pyproject.toml``::

    [project.entry-points."edgeexplore.latency_backends"]
    my-board = "my_package.backend:MyBoardBackend"

The object an entry point names is called with the user's settings as keyword arguments and must
return something satisfying :class:`~edgeexplore.latency.base.LatencyBackend`. Built-in names win
over an entry point of the same name (a third-party package cannot silently replace ``torch-cpu``).
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from ..errors import EdgeExploreError
from .base import LatencyBackend

GROUP = "edgeexplore.latency_backends"

#: name -> "module:attribute" of the built-in backends (imported lazily: onnxruntime and CUDA
#: initialisation are not paid for by users who never time with them)
BUILTIN: dict[str, str] = {
    "torch-cpu": "edgeexplore.latency.torch_cpu:TorchCPUBackend",
    "torchscript": "edgeexplore.latency.compiled:TorchScriptBackend",
    "torch-compile": "edgeexplore.latency.compiled:TorchCompileBackend",
    "onnxruntime": "edgeexplore.latency.onnxrt:OnnxRuntimeBackend",
    "cuda": "edgeexplore.latency.cuda:CudaBackend",
    "command": "edgeexplore.latency.command:CommandBackend",
    "lut": "edgeexplore.latency.lut:LUTBackend",
}


@dataclass(frozen=True)
class BackendInfo:
    name: str
    available: bool
    #: why it is unavailable, or a short description of the device it times
    reason: str
    #: "builtin" or the distribution/entry point that provides it
    origin: str


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _entry_points() -> dict[str, Any]:
    """Third-party backends by name (entry point objects, not yet loaded)."""
    found = {}
    for ep in entry_points(group=GROUP):
        if ep.name not in BUILTIN and ep.name not in found:
            found[ep.name] = ep
    return found


def backend_names() -> list[str]:
    return list(BUILTIN) + sorted(_entry_points())


def _factory(name: str) -> Any:
    if name in BUILTIN:
        return _load(BUILTIN[name])
    ep = _entry_points().get(name)
    if ep is None:
        raise EdgeExploreError(
            f"unknown latency backend {name!r} (known: {', '.join(backend_names())})"
        )
    try:
        return ep.load()
    except Exception as e:  # noqa: BLE001  (a broken plug-in must not look like our bug)
        raise EdgeExploreError(f"backend {name!r} ({ep.value}) failed to load: {e}") from None


def text_settings(name: str) -> set[str]:
    """The settings of backend ``name`` that take text: a str default or a str annotation.

    The CLI reads ``--set`` values as JSON, so without this ``--set command=false`` became the
    boolean False (and ``device_name=123`` a number) instead of the text the user typed.
    """
    try:
        params = inspect.signature(_factory(name)).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {p.name for p in params
            if isinstance(p.default, str) or re.search(r"\bstr\b", str(p.annotation))}


def get_backend(name: str, **settings: Any) -> LatencyBackend:
    """Construct the backend ``name`` with ``settings`` (its keyword arguments).

    ``None`` settings are dropped so callers can pass ``threads=None`` for "the default".
    """
    settings = {k: v for k, v in settings.items() if v is not None}
    factory = _factory(name)
    _check_setting_names(name, factory, settings)
    try:
        backend = factory(**settings)
    except TypeError as e:
        raise EdgeExploreError(f"backend {name!r}: bad settings ({e})") from None
    for member in ("name", "available", "describe_device", "measure"):
        if not hasattr(backend, member):
            raise EdgeExploreError(f"backend {name!r} does not provide {member!r}")
    return backend


def _check_setting_names(name: str, factory: Any, settings: Mapping[str, Any]) -> None:
    """Name an unknown setting and the valid ones (the factory's keyword arguments)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # not introspectable: the call itself will complain
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    valid = [p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                   inspect.Parameter.KEYWORD_ONLY)]
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        raise EdgeExploreError(f"backend {name!r} has no setting {unknown[0]!r} "
                               f"(its settings: {', '.join(valid) or 'none'})")


def list_backends(settings: Mapping[str, Mapping[str, Any]] | None = None) -> list[BackendInfo]:
    """Every backend, whether it can run here, and why not (or what it runs on).

    ``settings`` maps a backend name to the settings to probe it with (e.g. a command template
    for ``command``); the others are probed with their defaults.
    """
    settings = settings or {}
    unknown = sorted(set(settings) - set(backend_names()))
    if unknown:
        known = ", ".join(backend_names())
        raise EdgeExploreError(f"unknown latency backend {unknown[0]!r} (known: {known})")
    eps = _entry_points()
    out = []
    for name in backend_names():
        origin = "builtin" if name in BUILTIN else f"entry point {eps[name].value}"
        try:
            ok, why = get_backend(name, **dict(settings.get(name, {}))).available()
        except Exception as e:  # noqa: BLE001  (report it, do not crash the listing)
            ok, why = False, f"failed to load: {e}"
        out.append(BackendInfo(name, bool(ok), str(why), origin))
    return out
