"""Ablation variants: named edits of a base architecture, as in the EdgeViT paper's tables.

A :class:`Variant` is a set of per-stage changes (block kind, block options, mlp ratio, ...).
The built-in components change the stages whose sample rate is > 1 (stages 1-3 of every EdgeViT
preset), because that is where the paper's ablated parts live: stage 4 runs plain self-attention
over all tokens and has no aggregation, sampling or propagation to ablate.

User-defined variant lists come from YAML files (see ``studies/ablations/example.yaml``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import BLOCKS, NUM_STAGES, ArchConfig, StageConfig, resolve_arch
from ..errors import ConfigError, reject_unknown_keys
from ..yamlfile import read_yaml

#: keys a variant may change on a stage (depth and width are the matcher's to set, but a user
#: may give a starting point)
STAGE_KEYS = ("block", "options", "mlp_ratio", "heads", "sample_rate", "depth", "width")


@dataclass(frozen=True)
class Variant:
    """One row of an ablation table: a name and what it changes on which stages.

    ``changes`` applies to every stage in ``stages`` (``None`` = the stages with sample rate > 1
    in the base); ``stage_changes`` maps a 0-based stage index to changes for that stage only
    and is applied after ``changes``.
    """

    name: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    stages: tuple[int, ...] | None = None
    stage_changes: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    description: str = ""
    baseline: bool = False

    def target_stages(self, base: ArchConfig) -> tuple[int, ...]:
        if self.stages is not None:
            return self.stages
        return tuple(i for i, s in enumerate(base.stages) if s.sample_rate > 1)

    def changed_stages(self, base: ArchConfig) -> tuple[int, ...]:
        """Every stage this variant's changes touch (0-based, sorted)."""
        return tuple(sorted(set(self.target_stages(base)) | set(self.stage_changes)))

    def apply(self, base: ArchConfig) -> ArchConfig:
        """The base with this variant's changes (depths and widths still the base's)."""
        cfg = base
        for i in self.target_stages(base):
            cfg = _change_stage(cfg, i, self.changes, self.name)
        for i, ch in sorted(self.stage_changes.items()):
            cfg = _change_stage(cfg, i, ch, self.name)
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "baseline": self.baseline,
            "changes": dict(self.changes),
            "stages": None if self.stages is None else [i + 1 for i in self.stages],
            "stage_changes": {str(i + 1): dict(c) for i, c in sorted(self.stage_changes.items())},
        }


def _change_stage(cfg: ArchConfig, index: int, changes: Mapping[str, Any], name: str) -> ArchConfig:
    if not changes:
        return cfg
    stage = cfg.stages[index]
    kw = dict(changes)
    block = kw.get("block", stage.block)
    # Options carry over only within the same block kind; a new kind starts from its defaults.
    opts = dict(stage.opts) if block == stage.block else {}
    opts.update(kw.pop("options", None) or {})
    kw["block"] = block
    kw["options"] = opts
    try:
        return cfg.with_stage(index, **kw)
    except ConfigError as e:
        raise ConfigError(f"variant {name!r}: {e}") from None


@dataclass(frozen=True)
class Component:
    """A named list of variants; the first with ``baseline`` set is the reference row."""

    name: str
    help: str
    variants: tuple[Variant, ...]
    base: ArchConfig | None = None
    flops_target: float | None = None
    resolution: Any = None
    source: str | None = None

    @property
    def baseline(self) -> Variant:
        for v in self.variants:
            if v.baseline:
                return v
        return self.variants[0]


def _lgl(**options: Any) -> dict[str, Any]:
    return {"block": "lgl", "options": options}


def _builtin_components() -> dict[str, Component]:
    sra = {"block": "sra"}
    comps = [
        Component(
            "local-agg",
            "local aggregation: LocalAgg convs (official) vs none (PVT SRA block) vs LSA windows",
            (
                Variant(
                    "LocalAgg",
                    _lgl(local_agg="conv"),
                    baseline=True,
                    description="official: pw-dw-pw convs before the sparse attention",
                ),
                Variant(
                    "none (SRA)",
                    sra,
                    description="no local aggregation: PVT spatial-reduction attention block",
                ),
                Variant(
                    "LSA",
                    _lgl(local_agg="lsa"),
                    description="Twins local-grouped self-attention in windows",
                ),
            ),
        ),
        Component(
            "sampler",
            "global sparse attention sampler: strided pick (official) vs centre vs avg vs max",
            (
                Variant(
                    "pick",
                    _lgl(sampler="pick"),
                    baseline=True,
                    description="official: top-left token of every r×r window",
                ),
                Variant(
                    "center", _lgl(sampler="center"), description="centre token of each window"
                ),
                Variant(
                    "avg", _lgl(sampler="avg"), description="average pool, kernel = stride = r"
                ),
                Variant("max", _lgl(sampler="max"), description="max pool, kernel = stride = r"),
            ),
        ),
        Component(
            "local-prop",
            "local propagation: transposed dw conv (official) vs bilinear vs nearest vs none (SRA)",
            (
                Variant(
                    "deconv",
                    _lgl(local_prop="deconv"),
                    baseline=True,
                    description="official: depthwise ConvTranspose2d, kernel = stride = r",
                ),
                Variant("bilinear", _lgl(local_prop="bilinear"), description="bilinear upsampling"),
                Variant("nearest", _lgl(local_prop="nearest"), description="nearest upsampling"),
                Variant(
                    "none (SRA)",
                    sra,
                    description="the paper's 'none': PVT SRA (full-resolution queries, "
                    "nothing to propagate)",
                ),
            ),
        ),
        Component(
            "global-attn",
            "global attention: LGL blocks (official) vs conv-only blocks in the sparse stages",
            (
                Variant(
                    "LGL",
                    {"block": "lgl"},
                    baseline=True,
                    description="official local-global-local block",
                ),
                Variant(
                    "conv-only",
                    {"block": "conv"},
                    description="position encoding, LocalAgg and conv FFN, no attention",
                ),
            ),
        ),
    ]
    return {c.name: c for c in comps}


def block_component() -> Component:
    """Every block kind registered in :data:`config.BLOCKS` (read now, so sibling kinds count)."""
    variants = [Variant("lgl", {"block": "lgl"}, baseline=True, description=BLOCKS["lgl"].help)]
    for name, spec in BLOCKS.items():
        if name != "lgl":
            variants.append(Variant(name, {"block": name}, description=spec.help))
    return Component(
        "block", "every block kind in the registry, in the sparse stages", tuple(variants)
    )


def builtin_names() -> list[str]:
    return [*_builtin_components(), "block"]


def get_component(spec: str) -> Component:
    """A built-in component name or the path of a YAML variant list."""
    if spec == "block":
        return block_component()
    comps = _builtin_components()
    if spec in comps:
        return comps[spec]
    path = Path(spec)
    if not path.exists():
        path = _shipped_variant_file(spec) or path
    if path.suffix in (".yaml", ".yml") or path.exists():
        return load_component(path)
    raise ConfigError(
        f"{spec!r} is neither a component ({', '.join(builtin_names())}) nor a YAML variant file"
    )


def _shipped_variant_file(spec: str) -> Path | None:
    """``studies/ablations/NAME[.yaml]`` of the checkout or of the installed package, so the
    shipped variant lists work by name (``ablate example``) and from any working directory."""
    from ..search.recipe import studies_dir

    folder = studies_dir() / "ablations"
    name = Path(spec).name
    for cand in (folder / name, folder / f"{name}.yaml"):
        if cand.is_file():
            return cand
    return None


# -- user YAML ---------------------------------------------------------------------------------

_FILE_KEYS = {"name", "description", "base", "resolution", "flops_target", "stages", "variants"}
_VARIANT_KEYS = {"name", "description", "baseline", "changes", "stages", "stage_changes"}


def load_component(path: str | Path) -> Component:
    """Read a user-defined variant list; errors name the file, the key and the problem."""
    path = Path(path)
    data = read_yaml(path, "variant file")
    try:
        return component_from_dict(data, default_name=path.stem, source=str(path))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def component_from_dict(
    data: Any, default_name: str = "custom", source: str | None = None
) -> Component:
    if not isinstance(data, Mapping):
        raise ConfigError("a variant file must be a mapping with a 'variants' list")
    reject_unknown_keys(data, sorted(_FILE_KEYS))
    raw = data.get("variants")
    if not isinstance(raw, list) or not raw:
        raise ConfigError("'variants' must be a non-empty list")
    base = None
    if data.get("base") is not None:
        b = data["base"]
        if isinstance(b, Mapping):
            base = ArchConfig.from_dict(b)
        elif isinstance(b, str):
            base = resolve_arch(b)
        else:
            raise ConfigError(
                "'base' must be a preset name, a JSON path or an architecture mapping"
            )
    default_stages = _parse_stages(data.get("stages"), "stages")
    flops = data.get("flops_target")
    if flops is not None:
        from .matching import parse_flops

        flops = parse_flops(flops)
    variants = []
    seen: set[str] = set()
    for i, v in enumerate(raw):
        variant = _variant_from_dict(v, i, default_stages)
        if variant.name in seen:
            raise ConfigError(f"variant {i + 1}: the name {variant.name!r} is used twice")
        seen.add(variant.name)
        variants.append(variant)
    if sum(v.baseline for v in variants) > 1:
        raise ConfigError("only one variant can be the baseline")
    if not any(v.baseline for v in variants):
        variants[0] = dataclasses.replace(variants[0], baseline=True)
    return Component(
        name=str(data.get("name") or default_name),
        help=str(data.get("description") or "user-defined variants"),
        variants=tuple(variants),
        base=base,
        flops_target=flops,
        resolution=data.get("resolution"),
        source=source,
    )


def _parse_stages(value: Any, key: str) -> tuple[int, ...] | None:
    """``sparse`` / absent → None (stages with sample rate > 1), ``all``, or 1-based numbers."""
    if value is None or value == "sparse":
        return None
    if value == "all":
        return tuple(range(NUM_STAGES))
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in value
    ):
        raise ConfigError(
            f"{key!r} must be 'sparse', 'all' or a list of stage numbers 1-{NUM_STAGES}"
        )
    for n in value:
        if not 1 <= n <= NUM_STAGES:
            raise ConfigError(f"{key!r}: stage {n} does not exist (stages are 1-{NUM_STAGES})")
    return tuple(sorted({n - 1 for n in value}))


def _check_changes(changes: Any, where: str) -> dict[str, Any]:
    if changes is None:
        return {}
    if not isinstance(changes, Mapping):
        raise ConfigError(f"{where} must be a mapping of stage settings")
    reject_unknown_keys(changes, STAGE_KEYS, where)
    if "options" in changes and not isinstance(changes["options"], Mapping):
        raise ConfigError(f"{where}: 'options' must be a mapping")
    if "block" in changes and changes["block"] not in BLOCKS:
        raise ConfigError(
            f"{where}: unknown block {changes['block']!r} "
            f"(valid blocks: {', '.join(sorted(BLOCKS))})"
        )
    # Validate values now (against a throwaway stage) so mistakes surface before any matching.
    probe = StageConfig(depth=1, width=64, heads=1, sample_rate=2)
    trial = {k: v for k, v in changes.items() if k not in ("depth", "width")}
    try:
        _change_stage(ArchConfig(stages=(probe,) * NUM_STAGES), 0, trial, "?")
    except ConfigError as e:
        msg = str(e).removeprefix("variant '?': ")
        if "divisible" not in msg:
            raise ConfigError(f"{where}: {msg}") from None
    return dict(changes)


def _variant_from_dict(v: Any, index: int, default_stages: tuple[int, ...] | None) -> Variant:
    where = f"variant {index + 1}"
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where} must be a mapping with at least a 'name'")
    reject_unknown_keys(v, sorted(_VARIANT_KEYS), where)
    name = v.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: 'name' must be a non-empty string")
    where = f"variant {name!r}"
    changes = _check_changes(v.get("changes"), f"{where}: changes")
    stages = _parse_stages(v["stages"], f"{where}: stages") if "stages" in v else default_stages
    per_stage: dict[int, dict[str, Any]] = {}
    sc = v.get("stage_changes") or {}
    if not isinstance(sc, Mapping):
        raise ConfigError(f"{where}: 'stage_changes' must map stage numbers to settings")
    for key, ch in sc.items():
        try:
            n = int(key)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: stage_changes key {key!r} is not a stage number") from None
        if not 1 <= n <= NUM_STAGES:
            raise ConfigError(f"{where}: stage {n} does not exist (stages are 1-{NUM_STAGES})")
        per_stage[n - 1] = _check_changes(ch, f"{where}: stage_changes {n}")
    baseline = v.get("baseline", False)
    if not isinstance(baseline, bool):
        raise ConfigError(f"{where}: 'baseline' must be true or false")
    return Variant(
        name=name.strip(),
        changes=changes,
        stages=stages,
        stage_changes=per_stage,
        description=str(v.get("description") or ""),
        baseline=baseline,
    )
