"""FLOPs matching: adjust a variant's depths (and widths if needed) to a common FLOPs budget.

The EdgeViT paper compares its ablation variants "at about 0.5 GFLOPs by scaling the number of
layers down". We automate that deterministically:

1. Every block of a stage costs the same, so a network's FLOPs are exactly linear in its stage
   depths: ``F(d) = F0 + Σ d_i·b_i``. One count with the per-stage block split (or five without
   it: the network, then each stage one block deeper) gives ``F0`` and ``b_i``; every depth
   combination is then evaluated by arithmetic.
2. All combinations with each depth in ``1..2·d_base+2`` are enumerated; those within the
   tolerance are ranked by the smallest change to the base (sum of |depth differences|), then by
   distance to the target, then lexicographically, so the choice is reproducible.
3. Only when no depth combination lands within tolerance (a far target, or a tiny network whose
   fixed stem/head cost makes the steps too coarse) are the widths scaled by a common multiplier,
   each width rounded to a multiple of ``heads·4`` (so head dims stay whole and divisible by 4),
   trying the smallest width change first and then searching depths again at each.

The winner is confirmed with a real count; the result records base → matched depths and widths.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import ArchConfig
from ..errors import ConfigError, EdgeExploreError
from ..units import human_count

#: the paper's budget, at the paper's resolution
PAPER_FLOPS = 500_000_000
PAPER_RESOLUTION = 224
DEFAULT_TOLERANCE = 0.03


@dataclass(frozen=True)
class CostPoint:
    """What the matcher needs to know about one network.

    ``per_module`` may hold the FLOPs of each stage's blocks as ``blocks1`` .. ``blocks4`` (as
    :func:`edgeexplore.cost.count_cost` reports them); then one count gives the whole linear
    model instead of five.
    """

    flops: int
    params: int
    per_module: dict[str, int] = field(default_factory=dict)


CostFn = Callable[[ArchConfig], CostPoint]


def count_cost_fn(cfg: ArchConfig) -> CostPoint:
    """The real counter (fvcore convention, via :func:`edgeexplore.cost.count_cost`)."""
    from ..cost import count_cost

    rep = count_cost(cfg)
    return CostPoint(int(rep.flops), int(rep.params), dict(getattr(rep, "per_module", {}) or {}))


class CachedCost:
    """Memoises a cost function by architecture hash (the matcher revisits networks)."""

    def __init__(self, fn: CostFn | None = None) -> None:
        self.fn = fn or count_cost_fn
        self.cache: dict[str, CostPoint] = {}
        self.calls = 0

    def __call__(self, cfg: ArchConfig) -> CostPoint:
        key = cfg.hash
        if key not in self.cache:
            self.calls += 1
            self.cache[key] = self.fn(cfg)
        return self.cache[key]


_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_flops(value: Any) -> int:
    """``"0.5G"``, ``"500M"``, ``"5e8"``, ``0.5`` → FLOPs. A bare number below 1000 is GFLOPs."""
    if isinstance(value, bool):
        raise ConfigError(f"FLOPs target must be a number like 0.5G or 500M, not {value!r}")
    if isinstance(value, (int, float)):
        num, unit = float(value), ""
        if num < 1000:
            unit = "G"
    else:
        m = re.fullmatch(
            r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKmMgGtT]?)\s*(?:flops?)?\s*",
            str(value),
            flags=re.IGNORECASE,
        )
        if not m:
            raise ConfigError(f"FLOPs target {value!r} is not a number like 0.5G or 500M")
        num, unit = float(m.group(1)), m.group(2).upper()
        if not unit and num < 1000:
            unit = "G"
    if not math.isfinite(num * _UNITS[unit]):
        raise ConfigError(f"FLOPs target {value!r} is not a finite number")
    flops = round(num * _UNITS[unit])
    if flops <= 0:
        raise ConfigError(f"FLOPs target must be positive, not {value!r}")
    return flops


def format_flops(flops: float) -> str:
    """FLOPs by the program's one unit rule (``6 M``, ``0.5 G`` reads ``500 M``)."""
    return human_count(flops)


def default_target(resolution: tuple[int, int]) -> int:
    """The paper's 0.5 GFLOPs at 224², scaled by pixel count to another resolution."""
    h, w = resolution
    return round(PAPER_FLOPS * h * w / PAPER_RESOLUTION**2)


@dataclass(frozen=True)
class MatchResult:
    """A variant matched to the budget: the unmatched config, the matched one and its cost."""

    start: ArchConfig
    matched: ArchConfig
    flops: int
    params: int
    start_flops: int
    target: int
    tolerance: float
    candidates: int  # depth/width combinations considered

    @property
    def rel_error(self) -> float:
        return self.flops / self.target - 1.0

    @property
    def within(self) -> bool:
        return abs(self.rel_error) <= self.tolerance + 1e-12

    @property
    def depth_change(self) -> int:
        return sum(abs(a - b) for a, b in zip(self.start.depths, self.matched.depths))

    @property
    def widths_changed(self) -> bool:
        return self.start.widths != self.matched.widths

    def adjustment(self) -> str:
        """``depths 1,1,3,2 → 1,1,3,1`` (and widths when they moved)."""

        def j(t: tuple[int, ...]) -> str:
            return ",".join(map(str, t))

        parts = []
        if self.start.depths != self.matched.depths:
            parts.append(f"depths {j(self.start.depths)} → {j(self.matched.depths)}")
        else:
            parts.append(f"depths {j(self.start.depths)} (kept)")
        if self.widths_changed:
            parts.append(f"widths {j(self.start.widths)} → {j(self.matched.widths)}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_depths": list(self.start.depths),
            "start_widths": list(self.start.widths),
            "start_flops": self.start_flops,
            "depths": list(self.matched.depths),
            "widths": list(self.matched.widths),
            "heads": [s.heads for s in self.matched.stages],
            "flops": self.flops,
            "params": self.params,
            "target": self.target,
            "tolerance": self.tolerance,
            "rel_error": self.rel_error,
            "adjustment": self.adjustment(),
            "arch_hash": self.matched.hash,
        }


@dataclass(frozen=True)
class _Linear:
    """FLOPs of one width setting as an exact linear function of the stage depths."""

    f0: int
    per_block: tuple[float, ...]

    def flops(self, depths: tuple[int, ...]) -> float:
        return self.f0 + sum(d * b for d, b in zip(depths, self.per_block))


def _linear_model(cfg: ArchConfig, cost: CostFn) -> _Linear:
    c0 = cost(cfg)
    blocks = [c0.per_module.get(f"blocks{i + 1}") for i in range(len(cfg.stages))]
    if all(b is not None for b in blocks):
        per_block = [b / s.depth for b, s in zip(blocks, cfg.stages)]
    else:
        # No per-stage split: measure each stage one block deeper.
        per_block = [
            cost(cfg.with_stage(i, depth=s.depth + 1)).flops - c0.flops
            for i, s in enumerate(cfg.stages)
        ]
    f0 = c0.flops - sum(d * b for d, b in zip(cfg.depths, per_block))
    return _Linear(round(f0), tuple(per_block))


def depth_bounds(
    base_depths: tuple[int, ...],
    max_depth: int | None = None,
    stages: tuple[int, ...] | None = None,
) -> list[range]:
    """Depths searched per stage: 1 .. 2·base+2 (capped at ``max_depth`` when given); a stage
    not in ``stages`` (0-based; None = every stage) keeps its depth."""
    out = []
    for i, d in enumerate(base_depths):
        if stages is not None and i not in stages:
            out.append(range(d, d + 1))
            continue
        hi = 2 * d + 2
        if max_depth is not None:
            hi = min(hi, max(max_depth, d))
        out.append(range(1, hi + 1))
    return out


def _best_depths(
    lin: _Linear, base_depths: tuple[int, ...], target: int, tol: float, bounds: list[range]
) -> list[tuple[int, ...]]:
    """Depth tuples within tolerance, best first (smallest change, closest, lexicographic)."""
    lo, hi = target * (1 - tol), target * (1 + tol)
    hits = []
    for depths in itertools.product(*bounds):
        f = lin.flops(depths)
        if lo <= f <= hi:
            change = sum(abs(a - b) for a, b in zip(depths, base_depths))
            hits.append((change, abs(f - target), depths))
    hits.sort()
    return [h[2] for h in hits]


def width_candidates(
    cfg: ArchConfig, steps: int = 24, step: float = 1 / 32
) -> list[tuple[int, ...]]:
    """Width tuples from a common multiplier 1 ± k·step, each rounded to a multiple of heads·4.

    Ordered by how far they move from the base widths; the base itself is first.
    """
    quanta = []
    for s in cfg.stages:
        q = s.heads * 4
        quanta.append(q if s.width % q == 0 else s.heads)
    seen: dict[tuple[int, ...], float] = {cfg.widths: 0.0}
    for k in range(1, steps + 1):
        for m in (1 + k * step, 1 - k * step):
            if m <= 0:
                continue
            ws = tuple(max(q, round(w * m / q) * q) for w, q in zip(cfg.widths, quanta))
            if ws not in seen:
                seen[ws] = sum(abs(a / b - 1) for a, b in zip(ws, cfg.widths))
    return sorted(seen, key=lambda ws: (seen[ws], ws))


def _with_widths(cfg: ArchConfig, widths: tuple[int, ...]) -> ArchConfig:
    stages = tuple(s.replace(width=w) for s, w in zip(cfg.stages, widths))
    return cfg.replace(stages=stages)


def match_flops(
    cfg: ArchConfig,
    target: int,
    tolerance: float = DEFAULT_TOLERANCE,
    cost: CostFn | None = None,
    *,
    allow_widths: bool = True,
    max_depth: int | None = None,
    depth_stages: tuple[int, ...] | None = None,
    name: str = "the variant",
) -> MatchResult:
    """Adjust ``cfg``'s depths (then widths) so its FLOPs are within ``tolerance`` of ``target``.

    ``depth_stages`` (0-based) limits which stages may change depth (None = all of them).

    Raises :class:`EdgeExploreError` naming the closest reachable FLOPs when nothing fits.
    """
    if target <= 0:
        raise ConfigError(f"FLOPs target must be positive, not {target}")
    if not 0 < tolerance < 1:
        raise ConfigError(f"tolerance must be between 0 and 1 (e.g. 0.03), not {tolerance}")
    cost = cost if isinstance(cost, CachedCost) else CachedCost(cost)
    start_cost = cost(cfg)
    bounds = depth_bounds(cfg.depths, max_depth, depth_stages)
    widths_list = width_candidates(cfg) if allow_widths else [cfg.widths]
    considered = 0
    reach_lo = reach_hi = None
    for widths in widths_list:
        wcfg = _with_widths(cfg, widths)
        lin = _linear_model(wcfg, cost)
        considered += _count(bounds)
        for depths in _best_depths(lin, cfg.depths, target, tolerance, bounds)[:8]:
            cand = wcfg.replace(
                stages=tuple(s.replace(depth=d) for s, d in zip(wcfg.stages, depths))
            )
            real = cost(cand)
            # The linear model is exact for our blocks; the real count is the referee anyway.
            if abs(real.flops / target - 1.0) <= tolerance + 1e-12:
                return MatchResult(
                    cfg,
                    cand,
                    real.flops,
                    real.params,
                    start_cost.flops,
                    target,
                    tolerance,
                    considered,
                )
        low = lin.flops(tuple(r[0] for r in bounds))
        high = lin.flops(tuple(r[-1] for r in bounds))
        reach_lo = low if reach_lo is None else min(reach_lo, low)
        reach_hi = high if reach_hi is None else max(reach_hi, high)
    what = "depths or widths" if allow_widths else "depths (widths were not allowed to change)"
    if depth_stages is not None:
        what += f" with depths changing only in stages {', '.join(str(i + 1) for i in depth_stages)}"
    reach = ""
    if reach_lo is not None:
        reach = f" (reachable: {format_flops(reach_lo)} to {format_flops(reach_hi)})"
    raise EdgeExploreError(
        f"cannot match {name} to {format_flops(target)} FLOPs ±{tolerance:.0%} by changing "
        f"{what}{reach}; choose another --flops-target, --tolerance or --base"
    )


def _count(bounds: list[range]) -> int:
    n = 1
    for r in bounds:
        n *= len(r)
    return n
