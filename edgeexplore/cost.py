"""Parameters, FLOPs and activations of a backbone, in the authors' (fvcore's) convention.

fvcore counts one multiply-add as one flop, LayerNorm as 5 and eval-mode BatchNorm as 2 per
element, and skips additions, activations, pooling, softmax and means; these are the figures the
EdgeViT paper reports. fvcore has no rule for ``aten::scaled_dot_product_attention`` and would
count our fused attention as zero, so :func:`sdpa_flop_jit` adds one: q·kᵀ plus attn·v, i.e.
``B·heads·Nq·Nk·(d_qk + d_v)`` multiply-adds, exactly what the two matmuls of the unfused
attention count. Likewise ``aten::addcmul``, which our local propagation uses in place of the
authors' depthwise transposed conv (kernel = stride, so one multiply-add per output element):
:func:`addcmul_jit` counts it as fvcore counts that conv, one flop and one activation per output
element.

``per_stage`` groups the FLOPs by the model's top-level modules: ``stem``; ``stage1`` ..
``stage4`` (each including its downsampler, ``stages.{i}.downsample``, because the downsampler
belongs to the stage in our module tree); ``head`` (final norm, pooling, head norm and
classifier). ``per_module`` keeps the finer split the reference tables use (``stem``,
``downsample2..4``, ``blocks1..4``, ``norm``, ``head``).

Counting traces the model once with a batch-1 input (~0.1-0.3 s for the presets); results are
cached per (architecture hash, resolution), so a search that revisits an architecture pays once.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from .config import ArchConfig, parse_resolution
from .errors import ConfigError

__all__ = ["CostReport", "count_cost", "sdpa_flop_jit"]


@dataclass(frozen=True)
class CostReport:
    """What a backbone costs at one input resolution (batch 1)."""

    params: int
    flops: int
    activations: int
    resolution: tuple[int, int]
    per_stage: dict[str, int] = field(default_factory=dict)
    per_module: dict[str, int] = field(default_factory=dict)
    #: leaf modules (a proxy for kernel launches / per-op dispatch; a latency-predictor feature)
    modules: int = 0

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def mparams(self) -> float:
        return self.params / 1e6

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["resolution"] = list(self.resolution)
        return d


def _shape(value: Any) -> list[int]:
    return [int(s) for s in value.type().sizes()]


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention``: q (…, Nq, d), k (…, Nk, d),
    v (…, Nk, dv) → ``prod(…)·Nq·Nk·(d + dv)`` (q·kᵀ and attn·v; scaling, masking and softmax
    are not counted, as fvcore does not count them in the unfused form either)."""
    q, k, v = (_shape(x) for x in inputs[:3])
    batch = math.prod(q[:-2])
    nq, d = q[-2], q[-1]
    nk, dv = k[-2], v[-1]
    return batch * nq * nk * (d + dv)


def addcmul_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle for ``aten::addcmul`` (``input + t1 · t2``): one multiply-add per output
    element, what fvcore counts for the depthwise transposed conv it replaces."""
    return math.prod(_shape(outputs[0]))


def _group_stage(name: str) -> str:
    if name.startswith("stem"):
        return "stem"
    if name.startswith("stages."):
        return f"stage{int(name.split('.')[1]) + 1}"
    return "head"


def _group_module(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] == "stem":
        return "stem"
    if parts[0] == "stages" and len(parts) >= 3:
        i = int(parts[1]) + 1
        return f"downsample{i}" if parts[2] == "downsample" else f"blocks{i}"
    if parts[0] in ("norm", "global_pool", "head_norm", "head"):
        return "norm" if parts[0] == "norm" else "head"
    return None


def _quiet_fvcore() -> None:
    # fvcore logs every op it skips (add, gelu, softmax ...): that is its convention, not news
    for name in ("fvcore", "fvcore.nn.jit_analysis"):
        logging.getLogger(name).setLevel(logging.ERROR)


def sdpa_activation_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """Activations of ``aten::scaled_dot_product_attention`` as fvcore counts the unfused form:
    the outputs of q·kᵀ (the attention matrix) and of attn·v."""
    q, k = _shape(inputs[0]), _shape(inputs[1])
    out = _shape(outputs[0])
    return math.prod(q[:-1]) * k[-2] + math.prod(out)


def _as_number(value: Any) -> float:
    return float(sum(value.values())) if isinstance(value, Counter) else float(value)


def _import_fvcore() -> None:
    # fvcore.nn scripts its focal loss at import time, which torch 2.15 deprecates loudly
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import fvcore.nn  # noqa: F401


def _combined_handles() -> dict[str, Any]:
    """One handle per op that returns both metrics, so one trace yields FLOPs and activations
    (each fvcore analysis would otherwise trace, i.e. run, the model again)."""
    _import_fvcore()
    from fvcore.nn.activation_count import _DEFAULT_SUPPORTED_OPS as act_ops
    from fvcore.nn.flop_count import _DEFAULT_SUPPORTED_OPS as flop_ops

    flop_ops = {**flop_ops, _SDPA: sdpa_flop_jit, _ADDCMUL: addcmul_jit}
    act_ops = {**act_ops, _SDPA: sdpa_activation_jit, _ADDCMUL: addcmul_jit}

    def make(flop_h: Any, act_h: Any) -> Any:
        def handle(inputs: list[Any], outputs: list[Any]) -> Counter:
            counts: Counter = Counter()
            if flop_h is not None:
                counts["flops"] = _as_number(flop_h(inputs, outputs))
            if act_h is not None:
                counts["activations"] = _as_number(act_h(inputs, outputs))
            return counts

        return handle

    return {op: make(flop_ops.get(op), act_ops.get(op)) for op in set(flop_ops) | set(act_ops)}


_SDPA = "aten::scaled_dot_product_attention"
_ADDCMUL = "aten::addcmul"


def _count_model(model: nn.Module, resolution: tuple[int, int], in_chans: int) -> CostReport:
    _import_fvcore()
    from fvcore.nn.jit_analysis import JitModelAnalysis

    _quiet_fvcore()
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, in_chans, *resolution)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent branches
            analysis = JitModelAnalysis(model, x).set_op_handle(**_combined_handles())
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            stats = analysis.by_module_and_operator()
    finally:
        model.train(was_training)
    flops = {name: int(c.get("flops", 0)) for name, c in stats.items()}
    per_stage = {"stem": 0, "stage1": 0, "stage2": 0, "stage3": 0, "stage4": 0, "head": 0}
    per_module: dict[str, int] = {}
    for name, n in flops.items():
        if name and "." not in name and name != "stages" or name.count(".") == 1 and \
                name.startswith("stages."):
            group = _group_stage(name)
            per_stage[group] = per_stage.get(group, 0) + n
        group = _group_module(name)
        depth_ok = name.count(".") == (0 if group in ("stem", "norm", "head") else 2)
        if group is not None and depth_ok and not (group == "downsample1" and n == 0):
            per_module[group] = per_module.get(group, 0) + n
    params = sum(p.numel() for p in model.parameters())
    return CostReport(
        params=params,
        modules=sum(1 for m in model.modules() if not any(m.children())),
        flops=flops.get("", 0),
        activations=int(stats.get("", Counter()).get("activations", 0)),
        resolution=resolution,
        per_stage=per_stage,
        per_module=dict(sorted(per_module.items(), key=_module_order)),
    )


def _module_order(item: tuple[str, int]) -> tuple[int, str]:
    order = ["stem", "downsample2", "downsample3", "downsample4", "blocks1", "blocks2",
             "blocks3", "blocks4", "norm", "head"]
    return (order.index(item[0]) if item[0] in order else len(order), item[0])


@lru_cache(maxsize=512)
def _count_arch(arch_json: str, resolution: tuple[int, int]) -> CostReport:
    from .models import build

    arch = ArchConfig.from_json(arch_json)
    # Counting needs shapes, not values: build on the meta device (no initialisation work), then
    # give the parameters zeroed real storage, which the traced forward pass runs on.
    with torch.device("meta"):
        model = build(arch)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            t.zero_()
    return _count_model(model, resolution, arch.in_chans)


def count_cost(cfg_or_model: ArchConfig | nn.Module, resolution: Any = None) -> CostReport:
    """Parameters, fvcore FLOPs, activations and the per-stage FLOP split of a backbone.

    ``cfg_or_model`` is an :class:`ArchConfig` (built and counted, cached per architecture and
    resolution) or a model (any ``nn.Module``; ours carry ``.arch``). ``resolution`` defaults to
    the config's; a plain module without ``.arch`` needs it.
    """
    if isinstance(cfg_or_model, ArchConfig):
        res = parse_resolution(resolution) if resolution is not None else cfg_or_model.resolution
        cached = _count_arch(cfg_or_model.to_json(), res)
        # copies, so a caller editing the dicts cannot corrupt the cache
        return replace(cached, per_stage=dict(cached.per_stage), per_module=dict(cached.per_module))
    if isinstance(cfg_or_model, nn.Module):
        arch = getattr(cfg_or_model, "arch", None)
        if resolution is None and arch is None:
            raise ConfigError("count_cost needs a resolution for a model without an ArchConfig")
        res = parse_resolution(resolution) if resolution is not None else arch.resolution
        in_chans = arch.in_chans if arch is not None else 3
        return _count_model(cfg_or_model, res, in_chans)
    raise ConfigError(
        f"count_cost takes an ArchConfig or a model, not {type(cfg_or_model).__name__}"
    )
