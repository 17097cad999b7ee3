"""Search spaces: YAML files of per-stage ranges and choices → Optuna suggestions → ArchConfig.

A space file says, for each of the four stages, which depths, widths, heads (or head sizes), MLP
ratios, sample rates and block kinds (with their options) a search may pick, plus the input
resolution and hard constraints (maximum params, FLOPs, latency on a named backend). The schema is
documented in docs/search-spaces.md. Every problem found while loading names the file, the key
and what is wrong, so a typo never silently shrinks or widens a search.

Sampling is define-by-run: a block's options are only suggested when that block is chosen, a
sample rate only for blocks that sample one, and an option only where it changes the network;
all three facts are read off the block kind's declaration (:mod:`edgeexplore.kinds`), so Optuna
never sees parameters that change nothing.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..config import (
    DEFAULT_BLOCK,
    MAX_DEPTH,
    MAX_WIDTH,
    NUM_STAGES,
    STAGE_STRIDES,
    ArchConfig,
    StageConfig,
    parse_resolution,
)
from ..errors import ConfigError, reject_unknown_keys
from ..kinds import BLOCKS, get_block_kind
from ..shipped import shipped_dir
from ..yamlfile import read_yaml

#: stage keys a space may set, each a fixed value, a list of choices or a {low, high} range
STAGE_KEYS = ("depth", "width", "heads", "head_dim", "mlp_ratio", "sample_rate", "block")
TOP_KEYS = (
    "name", "description", "resolution", "head_dim", "defaults", "stages", "constraints",
    "drop_path_rate", "qkv_bias", "macro",
)
CONSTRAINT_KEYS = ("max_params", "max_flops", "max_latency_ms", "latency_backend")
_SUFFIX = {"k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


class TrialLike(Protocol):
    """The part of ``optuna.trial.Trial`` a space uses (tests can pass a fake)."""

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1,
                    log: bool = False) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float: ...
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def parse_amount(value: Any, where: str) -> float:
    """``5e6``, ``"5M"``, ``"0.6G"``, ``"600k"`` → a number (for params and FLOPs limits)."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a number such as 5M or 0.6G, not {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kKmMgGtT]?)\s*", value)
        if m:
            return float(m.group(1)) * _SUFFIX.get(m.group(2).lower(), 1.0)
    raise ConfigError(f"{where}: expected a number such as 5M or 0.6G, not {value!r}")


# -- one parameter's domain ------------------------------------------------------------------------

@dataclass(frozen=True)
class Domain:
    """A fixed value, a set of choices, or an int/float range (optionally stepped or log)."""

    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    is_int: bool = True

    @property
    def fixed(self) -> bool:
        return self.choices is not None and len(self.choices) == 1

    def suggest(self, trial: TrialLike, name: str) -> Any:
        if self.choices is not None:
            if len(self.choices) == 1:
                return self.choices[0]
            return trial.suggest_categorical(name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.is_int:
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1),
                                     log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return any(_same(value, c) for c in self.choices)
        assert self.low is not None and self.high is not None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not self.low - 1e-9 <= value <= self.high + 1e-9:
            return False
        if self.is_int and value != int(value):
            return False
        if self.step:
            k = (value - self.low) / self.step
            return abs(k - round(k)) < 1e-6
        return True

    def values(self) -> list[Any] | None:
        """Every value, when the domain is finite (for describing a space)."""
        if self.choices is not None:
            return list(self.choices)
        if self.is_int:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        return None

    def describe(self) -> str:
        if self.choices is not None:
            return str(self.choices[0]) if self.fixed else "{" + ", ".join(map(str, self.choices)) + "}"
        step = f" step {self.step:g}" if self.step else ""
        log = " log" if self.log else ""
        return f"[{self.low:g}, {self.high:g}]{step}{log}"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return a == b


def _domain(raw: Any, where: str, kind: type, minimum: float | None = None,
            maximum: float | None = None) -> Domain:
    """Parse a scalar, a list or a ``{low, high, step, log}`` / ``{choices}`` mapping."""

    def check_value(v: Any) -> Any:
        if kind is int:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{where}: expected an integer, not {v!r}")
        elif kind is float:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{where}: expected a number, not {v!r}")
            v = float(v)
        if minimum is not None and v < minimum:
            raise ConfigError(f"{where}: {v!r} is below the minimum {minimum:g}")
        if maximum is not None and v > maximum:  # the architecture's sanity bound, said up front
            raise ConfigError(f"{where}: {v!r} is more than a stage may have ({maximum:g})")
        return v

    if isinstance(raw, dict):
        unknown = sorted(set(raw) - {"low", "high", "step", "log", "choices"})
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r} (a range has low, high, step, log; "
                "or give choices)"
            )
        if "choices" in raw:
            if set(raw) - {"choices"}:
                raise ConfigError(f"{where}: give either choices or low/high, not both")
            raw = raw["choices"]
        else:
            if "low" not in raw or "high" not in raw:
                raise ConfigError(f"{where}: a range needs both low and high")
            low, high = check_value(raw["low"]), check_value(raw["high"])
            if low > high:
                raise ConfigError(f"{where}: empty range, low {low} is greater than high {high}")
            step = raw.get("step")
            if step is not None:
                step = check_value(step) if kind is not int or step != 0 else step
                if step <= 0:
                    raise ConfigError(f"{where}: step must be positive, not {step}")
            log = raw.get("log", False)
            if not isinstance(log, bool):
                raise ConfigError(f"{where}: log must be true or false, not {log!r}")
            if log and step is not None:
                raise ConfigError(f"{where}: a range cannot be both log and stepped")
            if log and low <= 0:
                raise ConfigError(f"{where}: a log range needs low > 0, not {low}")
            return Domain(low=low, high=high, step=step, log=log, is_int=kind is int)
    if isinstance(raw, list):
        if not raw:
            raise ConfigError(f"{where}: the list of choices is empty")
        values = [check_value(v) for v in raw]
        if len(set(values)) != len(values):
            raise ConfigError(f"{where}: the choices {raw} repeat a value")
        return Domain(choices=tuple(values))
    if raw is None:
        raise ConfigError(f"{where}: no value given")
    return Domain(choices=(check_value(raw),))


# -- block choices -------------------------------------------------------------------------------

@dataclass(frozen=True)
class BlockChoice:
    """One allowed block kind and the choices for each of its options."""

    name: str
    options: dict[str, tuple] = field(default_factory=dict)


def _blocks(raw: Any, where: str) -> tuple[BlockChoice, ...]:
    if isinstance(raw, str):
        raw = {raw: {}}
    elif isinstance(raw, list):
        if not raw:
            raise ConfigError(f"{where}: the list of blocks is empty")
        if not all(isinstance(b, str) for b in raw):
            raise ConfigError(f"{where}: a list of blocks holds block names, not {raw!r}")
        if len(set(raw)) != len(raw):
            raise ConfigError(f"{where}: the blocks {raw} repeat a name")
        raw = {b: {} for b in raw}
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: expected a block name, a list of names or a mapping "
                          f"name → options, not {raw!r}")
    out = []
    for name, opts in raw.items():
        try:
            spec = get_block_kind(name)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        opts = opts or {}
        if not isinstance(opts, dict):
            raise ConfigError(f"{where}.{name}: expected a mapping of option → value or list, "
                              f"not {opts!r}")
        parsed: dict[str, tuple] = {}
        for key, values in opts.items():
            ow = f"{where}.{name}.{key}"
            if key not in spec.options:
                valid = ", ".join(sorted(spec.options)) or "none"
                raise ConfigError(f"{ow}: block {name!r} has no option {key!r} "
                                  f"(valid options: {valid})")
            values = values if isinstance(values, list) else [values]
            if not values:
                raise ConfigError(f"{ow}: the list of choices is empty")
            try:
                checked = tuple(spec.options[key].check(name, key, v) for v in values)
            except ConfigError as e:
                raise ConfigError(f"{ow}: {e}") from None
            parsed[key] = checked
        out.append(BlockChoice(name, parsed))
    return tuple(out)


# -- a stage -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StageSpace:
    index: int  # 0-based
    depth: Domain
    mlp_ratio: Domain
    sample_rate: Domain
    blocks: tuple[BlockChoice, ...]
    width: Domain | None = None
    heads: Domain | None = None
    head_dim: Domain | None = None
    #: head_dim comes from the top of the file: one Optuna parameter shared by every stage
    shared_hd: bool = False

    @property
    def prefix(self) -> str:
        return f"stage{self.index + 1}"

    def block_names(self) -> list[str]:
        return [b.name for b in self.blocks]


@dataclass(frozen=True)
class Constraints:
    max_params: float | None = None
    max_flops: float | None = None
    max_latency_ms: float | None = None
    latency_backend: str | None = None

    def check_cost(self, params: int, flops: int) -> str | None:
        """The reason the cost breaks a limit, or None."""
        if self.max_params is not None and params > self.max_params:
            return f"params {params / 1e6:.2f}M exceed max_params {self.max_params / 1e6:.2f}M"
        if self.max_flops is not None and flops > self.max_flops:
            return f"FLOPs {flops / 1e9:.3f}G exceed max_flops {self.max_flops / 1e9:.3f}G"
        return None

    def check_latency(self, latency_ms: float) -> str | None:
        if self.max_latency_ms is not None and latency_ms > self.max_latency_ms:
            return (f"latency {latency_ms:.2f} ms exceeds max_latency_ms "
                    f"{self.max_latency_ms:g} on {self.latency_backend or 'the study backend'}")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in CONSTRAINT_KEYS if getattr(self, k) is not None}


@dataclass(frozen=True)
class SearchSpace:
    """A loaded search-space file."""

    name: str
    stages: tuple[StageSpace, ...]
    resolution: tuple[tuple[int, int], ...]
    constraints: Constraints = Constraints()
    description: str = ""
    drop_path_rate: float = 0.0
    qkv_bias: bool = True
    macro: str = "edgevit"
    path: Path | None = None
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> SearchSpace:
        path = Path(path)
        data = read_yaml(path, "search space")
        try:
            return cls.from_dict(data, name=path.stem, path=path)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    @classmethod
    def from_dict(cls, data: Any, name: str = "space", path: Path | None = None) -> SearchSpace:
        if not isinstance(data, dict):
            raise ConfigError(f"a search space is a mapping with 'stages', not {type(data).__name__}")
        reject_unknown_keys(data, TOP_KEYS)
        if "stages" not in data:
            raise ConfigError("no 'stages' key (a list of the 4 stages' settings)")
        defaults = data.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise ConfigError("defaults: expected a mapping of stage settings")
        reject_unknown_keys(defaults, STAGE_KEYS, "defaults")
        raw_stages = data["stages"]
        if not isinstance(raw_stages, list) or len(raw_stages) != NUM_STAGES:
            raise ConfigError(f"stages: expected a list of {NUM_STAGES} stage mappings")
        shared_hd = data.get("head_dim")
        stages = []
        for i, st in enumerate(raw_stages):
            where = f"stages[{i}]"
            if st is None:
                st = {}
            if not isinstance(st, dict):
                raise ConfigError(f"{where}: expected a mapping of stage settings, not {st!r}")
            reject_unknown_keys(st, STAGE_KEYS, where)
            merged = {**defaults, **st}
            shared = False
            if shared_hd is not None and "head_dim" not in merged and (
                "width" not in merged or "heads" not in merged
            ):
                merged["head_dim"] = shared_hd
                shared = True
            stages.append(_stage(i, merged, where, shared))
        res_raw = data.get("resolution", 224)
        res_list = res_raw if isinstance(res_raw, list) else [res_raw]
        if not res_list:
            raise ConfigError("resolution: the list of choices is empty")
        try:
            resolution = tuple(parse_resolution(r) for r in res_list)
        except ConfigError as e:
            raise ConfigError(f"resolution: {e}") from None
        cons_raw = data.get("constraints") or {}
        if not isinstance(cons_raw, dict):
            raise ConfigError("constraints: expected a mapping")
        bad = sorted(set(cons_raw) - set(CONSTRAINT_KEYS))
        if bad:
            raise ConfigError(f"constraints: unknown key {bad[0]!r} (valid keys: "
                              f"{', '.join(CONSTRAINT_KEYS)})")
        cons = Constraints(
            max_params=_positive(cons_raw, "max_params"),
            max_flops=_positive(cons_raw, "max_flops"),
            max_latency_ms=_positive(cons_raw, "max_latency_ms"),
            latency_backend=cons_raw.get("latency_backend"),
        )
        space = cls(
            name=str(data.get("name", name)),
            stages=tuple(stages),
            resolution=resolution,
            constraints=cons,
            description=str(data.get("description", "")),
            drop_path_rate=float(data.get("drop_path_rate", 0.0)),
            qkv_bias=bool(data.get("qkv_bias", True)),
            macro=str(data.get("macro", "edgevit")),
            path=path,
            raw=data,
        )
        space._check_possible()
        return space

    def _check_possible(self) -> None:
        """Refuse a space in which no architecture can be valid (e.g. widths never divisible),
        or that offers a sample rate the stage's feature map cannot be divided by."""
        for st in self.stages:
            self._check_sample_rates(st)
            widths = st.width.values() if st.width is not None else None
            hds = st.head_dim.values() if st.head_dim is not None else None
            heads = st.heads.values() if st.heads is not None else None
            needs_heads = any(BLOCKS[b].uses_heads for b in st.block_names())
            if not needs_heads or widths is None:
                continue
            divisor = hds if hds is not None else heads
            if divisor and not any(w % d == 0 for w in widths for d in divisor):
                what = "head_dim" if hds is not None else "heads"
                raise ConfigError(
                    f"stages[{st.index}]: impossible: no width in {st.width.describe()} is "
                    f"divisible by any {what} in {(st.head_dim or st.heads).describe()}"
                )

    def _check_sample_rates(self, st: StageSpace) -> None:
        # The blocks would pad such a map: a network the authors' code cannot build, at a cost
        # nobody asked for. Refused here, where it can be fixed before anything is trained.
        if not any(BLOCKS[b].samples_rate for b in st.block_names()):
            return
        stride = STAGE_STRIDES[st.index]
        for rate in st.sample_rate.values() or []:
            for h, w in self.resolution:
                mh, mw = h // stride, w // stride
                if mh % rate or mw % rate:
                    fits = [r for r in range(1, math.gcd(mh, mw) + 1) if mh % r == 0 == mw % r]
                    raise ConfigError(
                        f"stages[{st.index}].sample_rate: {rate} does not divide the {mh}×{mw} "
                        f"map of stage {st.index + 1} at {h}×{w} (rates that do: "
                        f"{', '.join(map(str, fits))})"
                    )

    # -- sampling ----------------------------------------------------------------------------
    def suggest(self, trial: TrialLike, num_classes: int = 1000,
                resolution: Any = None) -> ArchConfig:
        """Ask ``trial`` for every value and build the ArchConfig (ConfigError if invalid)."""
        if resolution is not None:
            res = parse_resolution(resolution)
        elif len(self.resolution) == 1:
            res = self.resolution[0]
        else:
            labels = [f"{h}x{w}" for h, w in self.resolution]
            res = parse_resolution(trial.suggest_categorical("resolution", labels))
        stages = []
        for st in self.stages:
            p = st.prefix
            depth = st.depth.suggest(trial, f"{p}.depth")
            names = st.block_names()
            block = names[0] if len(names) == 1 else trial.suggest_categorical(f"{p}.block", names)
            choice = next(b for b in st.blocks if b.name == block)
            kind = BLOCKS[block]
            # the sample rate first: options may matter only when the block subsamples
            sr = st.sample_rate.suggest(trial, f"{p}.sample_rate") if kind.samples_rate else 1
            options: dict[str, Any] = {}
            for key in kind.options:  # declared order: an option's condition reads earlier ones
                values = choice.options.get(key)
                if values is None:
                    continue
                if len(values) == 1:
                    options[key] = values[0]
                elif kind.matters(key, options, sr):
                    options[key] = trial.suggest_categorical(f"{p}.{block}.{key}", list(values))
            uses_heads = kind.uses_heads
            width, heads = self._width_heads(trial, st, uses_heads)
            mlp = st.mlp_ratio.suggest(trial, f"{p}.mlp_ratio")
            try:
                stages.append(StageConfig(depth=depth, width=width, heads=heads, mlp_ratio=mlp,
                                          sample_rate=sr, block=block, options=options))
            except ConfigError as e:
                raise ConfigError(f"stage {st.index + 1}: {e}") from None
        return ArchConfig(stages=tuple(stages), resolution=res, num_classes=num_classes,
                          drop_path_rate=self.drop_path_rate, qkv_bias=self.qkv_bias,
                          macro=self.macro)

    @staticmethod
    def _width_heads(trial: TrialLike, st: StageSpace, uses_heads: bool) -> tuple[int, int]:
        p = st.prefix
        if st.width is not None:
            width = st.width.suggest(trial, f"{p}.width")
            if not uses_heads:
                return width, 1
            if st.heads is not None:
                return width, st.heads.suggest(trial, f"{p}.heads")
            if st.head_dim is not None:
                hd = st.head_dim.suggest(trial, _hd_name(st))
                if width % hd:
                    raise ConfigError(f"stage {st.index + 1}: width {width} is not a multiple of "
                                      f"head_dim {hd}")
                return width, width // hd
            return width, 1
        assert st.heads is not None and st.head_dim is not None
        heads = st.heads.suggest(trial, f"{p}.heads")
        hd = st.head_dim.suggest(trial, _hd_name(st))
        # Conv-only stages have no heads; width = heads × head_dim still sets their channels.
        return heads * hd, heads if uses_heads else 1

    # -- membership --------------------------------------------------------------------------
    def params_for(self, cfg: ArchConfig, check_resolution: bool = True) -> dict[str, Any]:
        """The Optuna parameters that make ``suggest`` return ``cfg`` (ConfigError if outside)."""
        params: dict[str, Any] = {}
        if check_resolution:
            if cfg.resolution not in self.resolution:
                raise ConfigError(f"resolution {cfg.resolution[0]}x{cfg.resolution[1]} is not "
                                  "in the space")
            if len(self.resolution) > 1:
                params["resolution"] = f"{cfg.resolution[0]}x{cfg.resolution[1]}"
        shared_hd = next((s.head_dim for st, s in zip(self.stages, cfg.stages)
                          if st.shared_hd and BLOCKS[s.block].uses_heads), None)
        for st, s in zip(self.stages, cfg.stages):
            p = st.prefix
            where = f"stage {st.index + 1}"

            def take(name: str, dom: Domain | None, value: Any, where: str = where) -> None:
                if dom is None or not dom.contains(value):
                    shown = dom.describe() if dom else "not searched"
                    raise ConfigError(f"{where}: {name.split('.')[-1]} {value} is outside {shown}")
                if not dom.fixed:
                    if name in params and not _same(params[name], value):
                        raise ConfigError(f"{where}: {name} {value} differs from {params[name]} "
                                          "in another stage, but the space shares it")
                    params[name] = value

            take(f"{p}.depth", st.depth, s.depth)
            if s.block not in st.block_names():
                raise ConfigError(f"{where}: block {s.block!r} is not among {st.block_names()}")
            if len(st.blocks) > 1:
                params[f"{p}.block"] = s.block
            choice = next(b for b in st.blocks if b.name == s.block)
            kind = BLOCKS[s.block]
            for key, value in s.opts.items():
                allowed = choice.options.get(key, (kind.options[key].default,))
                # an option the block ignores here (reset to its default by normalisation) is
                # not asked by suggest, so any space value stands for it
                if not kind.matters(key, s.opts, s.sample_rate):
                    continue
                if value not in allowed:
                    raise ConfigError(f"{where}: {s.block} option {key}={value!r} is not "
                                      f"among {list(allowed)}")
                if len(allowed) > 1:
                    params[f"{p}.{s.block}.{key}"] = value
            uses_heads = kind.uses_heads
            if st.width is not None:
                take(f"{p}.width", st.width, s.width)
                if uses_heads and st.heads is not None:
                    take(f"{p}.heads", st.heads, s.heads)
                elif uses_heads and st.head_dim is not None:
                    take(_hd_name(st), st.head_dim, s.head_dim)
                elif uses_heads and s.heads != 1:
                    raise ConfigError(f"{where}: heads {s.heads} but the space fixes 1 head")
            else:
                assert st.heads is not None and st.head_dim is not None
                if uses_heads:
                    take(f"{p}.heads", st.heads, s.heads)
                    take(_hd_name(st), st.head_dim, s.head_dim)
                else:
                    found = [(h, d) for h in st.heads.values() or [] for d in
                             st.head_dim.values() or [] if h * d == s.width]
                    # a shared head_dim is fixed by the attention stages; agree with it
                    known = params.get(_hd_name(st), shared_hd)
                    found.sort(key=lambda hd: hd[1] != known)
                    if not found:
                        raise ConfigError(f"{where}: width {s.width} is not heads × head_dim")
                    take(f"{p}.heads", st.heads, found[0][0])
                    take(_hd_name(st), st.head_dim, found[0][1])
            take(f"{p}.mlp_ratio", st.mlp_ratio, s.mlp_ratio)
            if kind.samples_rate:
                take(f"{p}.sample_rate", st.sample_rate, s.sample_rate)
            elif s.sample_rate != 1:
                raise ConfigError(f"{where}: a {s.block} block uses no sample rate")
        return params

    def contains(self, cfg: ArchConfig, check_resolution: bool = True) -> bool:
        """Whether ``suggest`` can return ``cfg`` (num_classes is the data's, never checked)."""
        try:
            self.params_for(cfg, check_resolution=check_resolution)
        except ConfigError:
            return False
        return True

    def why_not(self, cfg: ArchConfig, check_resolution: bool = True) -> str | None:
        """Why ``cfg`` lies outside the space, or None when it lies inside."""
        try:
            self.params_for(cfg, check_resolution=check_resolution)
        except ConfigError as e:
            return str(e)
        return None

    # -- describing --------------------------------------------------------------------------
    def size(self) -> int | None:
        """Number of distinct parameter combinations, counting block options only where they
        change the network (None if a float range makes it infinite)."""
        total = len(self.resolution)
        seen_hd: set[str] = set()
        for st in self.stages:
            n_stage = 0
            for b in st.blocks:
                n = 1
                for dom in (st.depth, st.mlp_ratio, st.width):
                    if dom is not None:
                        v = dom.values()
                        if v is None:
                            return None
                        n *= len(v)
                rates = st.sample_rate.values() if BLOCKS[b.name].samples_rate else [1]
                if rates is None:
                    return None
                n *= sum(_distinct_options(b, r) for r in rates)
                if BLOCKS[b.name].uses_heads or st.width is None:
                    for dom, name in ((st.heads, "h"), (st.head_dim, _hd_name(st))):
                        if dom is None or name in seen_hd:
                            continue
                        if name == "head_dim":
                            seen_hd.add(name)
                        n *= len(dom.values() or [0])
                n_stage += n
            total *= n_stage
        return total

    def rows(self) -> list[tuple[str, str]]:
        """(parameter, domain) pairs for a table."""
        out = [("resolution", ", ".join(f"{h}x{w}" for h, w in self.resolution))]
        shared = next((st.head_dim for st in self.stages if st.shared_hd), None)
        if shared is not None:
            out.append(("head_dim (all stages)", shared.describe()))
        for st in self.stages:
            p = st.prefix
            out.append((f"{p}.depth", st.depth.describe()))
            if st.width is not None:
                out.append((f"{p}.width", st.width.describe()))
            if st.heads is not None:
                out.append((f"{p}.heads", st.heads.describe()))
            if st.head_dim is not None and not st.shared_hd:
                out.append((_hd_name(st), st.head_dim.describe()))
            out.append((f"{p}.mlp_ratio", st.mlp_ratio.describe()))
            sampling = [b for b in st.block_names() if BLOCKS[b].samples_rate]
            if sampling:  # no row where no block of the stage samples: the rate is always 1
                out.append((f"{p}.sample_rate",
                            f"{st.sample_rate.describe()} ({', '.join(sampling)})"))
            blocks = []
            for b in st.blocks:
                opts = "; ".join(f"{k} {Domain(choices=v).describe()}" for k, v in b.options.items())
                blocks.append(b.name + (f" ({opts})" if opts else ""))
            out.append((f"{p}.block", " | ".join(blocks)))
        for k, v in self.constraints.to_dict().items():
            shown = f"{v:.0f}" if isinstance(v, float) and v.is_integer() else str(v)
            out.append((f"constraint {k}", shown))
        return out


def _distinct_options(choice: BlockChoice, sample_rate: int) -> int:
    """How many different option sets ``choice`` gives at ``sample_rate`` after normalisation."""
    spec = BLOCKS[choice.name]
    keys = list(choice.options)
    combos = itertools.product(*(choice.options[k] for k in keys))
    return len({tuple(sorted(spec.normalise(dict(zip(keys, c)), sample_rate).items()))
                for c in combos})


def _hd_name(st: StageSpace) -> str:
    # A head_dim set once at the top of the file is one shared parameter across stages.
    return "head_dim" if st.shared_hd else f"{st.prefix}.head_dim"


def _positive(raw: dict, key: str) -> float | None:
    if raw.get(key) is None:
        return None
    value = parse_amount(raw[key], f"constraints.{key}")
    if value <= 0:
        raise ConfigError(f"constraints.{key}: must be positive, not {raw[key]!r}")
    return value


def _stage(i: int, raw: dict, where: str, shared_hd: bool = False) -> StageSpace:
    if "depth" not in raw:
        raise ConfigError(f"{where}: missing 'depth'")
    has = [k for k in ("width", "heads", "head_dim") if k in raw]
    if "width" not in raw and not ("heads" in raw and "head_dim" in raw):
        raise ConfigError(f"{where}: give width (optionally with heads or head_dim), or heads "
                          "and head_dim (width = heads × head_dim)")
    if len(has) == 3:
        raise ConfigError(f"{where}: give at most two of width, heads and head_dim")
    st = StageSpace(
        index=i,
        depth=_domain(raw["depth"], f"{where}.depth", int, minimum=1, maximum=MAX_DEPTH),
        mlp_ratio=_domain(raw.get("mlp_ratio", 4.0), f"{where}.mlp_ratio", float, minimum=1e-9),
        sample_rate=_domain(raw.get("sample_rate", 1), f"{where}.sample_rate", int, minimum=1),
        blocks=_blocks(raw.get("block", DEFAULT_BLOCK), f"{where}.block"),
        width=(_domain(raw["width"], f"{where}.width", int, minimum=1, maximum=MAX_WIDTH)
               if "width" in raw else None),
        heads=_domain(raw["heads"], f"{where}.heads", int, minimum=1) if "heads" in raw else None,
        head_dim=(_domain(raw["head_dim"], f"{where}.head_dim", int, minimum=1)
                  if "head_dim" in raw else None),
        shared_hd=shared_hd,
    )
    return st


def list_spaces(folder: str | Path | None = None) -> list[Path]:
    """The space files shipped with the project (or in ``folder``)."""
    folder = Path(folder) if folder else spaces_dir()
    return sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))


def spaces_dir() -> Path:
    """``search_spaces/`` of the checkout, or the copy shipped inside the package."""
    return shipped_dir("search_spaces")


def resolve_space(spec: str | Path, base: Path | None = None) -> SearchSpace:
    """A path, a path relative to ``base`` (the recipe's folder), or a shipped space's name."""
    p = Path(spec)
    candidates = [p]
    if base is not None and not p.is_absolute():
        candidates.append(base / p)
    candidates += [spaces_dir() / p, spaces_dir() / f"{spec}.yaml"]
    for c in candidates:
        if c.is_file():
            return SearchSpace.load(c)
    names = ", ".join(x.stem for x in list_spaces())
    raise ConfigError(f"search space {spec!r} not found (as a path or a shipped space: {names})")


def random_configs(space: SearchSpace, n: int, seed: int = 0) -> list[ArchConfig]:
    """Up to ``n`` distinct valid architectures drawn at random from ``space`` (Optuna's random
    sampler, without a stored study): a candidate pool for choosing what to measure."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out: dict[str, ArchConfig] = {}
    for _ in range(20 * n):  # invalid combinations and repeats are skipped, within reason
        if len(out) >= n:
            break
        try:
            cfg = space.suggest(study.ask())
        except ConfigError:
            continue
        out.setdefault(cfg.hash, cfg)
    return list(out.values())
