"""Run an ablation: match every variant to the FLOPs budget, time it, train it over the seeds.

Everything goes through the store as it happens: the ablation and its matched variants first,
then one ``trial_results`` row per (variant, seed), committed as ``running`` before training and
as ``complete`` (or ``diverged``/``failed``) right after. A rerun therefore reuses every finished
run, an interrupted ablation resumes at the first unfinished one, and a network trained before
with the same recipe, data and seed (in any ablation or study) is reused instead of retrained.
Each run is one :func:`edgeexplore.evaluation.evaluate`; what is the ablation's own is the
bookkeeping of variants and runs around it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..config import ArchConfig, StageConfig, parse_resolution, resolve_arch
from ..errors import ConfigError, EdgeExploreError
from ..evaluation import (
    DataSpec,
    LatencySpec,
    Outcome,
    TrainingSpec,
    TrialRow,
    evaluate,
    new_trial_row,
)
from ..store import db
from .matching import (
    DEFAULT_TOLERANCE,
    CachedCost,
    CostFn,
    MatchResult,
    default_target,
    match_flops,
    parse_flops,
)
from .report import AblationReport, VariantRow
from .variants import Component, Variant, get_component

#: finished states: a run in one of these is never trained again for the same ablation
FINISHED = ("complete", "diverged")

DEFAULT_BASE = "edgevit_xxs"
DEFAULT_DATA = "synthetic"
DEFAULT_BACKEND = "torch-cpu"

#: The ``--quick`` base: EdgeViT's layout (sample rates 4,2,2,1, head dim 16, mlp ratio 4) at a
#: width small enough that a whole ablation trains in a minute or two on two CPU cores.
QUICK_BASE = ArchConfig(
    stages=tuple(
        StageConfig(depth=d, width=w, heads=w // 16, mlp_ratio=4.0, sample_rate=r)
        for d, w, r in zip((1, 1, 2, 1), (16, 32, 64, 96), (4, 2, 2, 1))
    ),
    resolution=(64, 64),
)
#: ``--quick``: tiny base at 64×64, built-in synthetic data (2000 train / 500 val images, 10
#: classes), 6 epochs, 2 seeds, a FLOPs budget about 10% below the tiny base (as 0.5G is to XXS).
#: Six epochs of 2000 images is about the least that lifts the tiny models off chance on the
#: synthetic task (2 epochs of 600 images left every variant at 9-11%).
QUICK = {
    "base": QUICK_BASE,
    "resolution": 64,
    "flops_target": "6M",
    "data": "synthetic:classes=10,train=2000,val=500",
    "epochs": 6,
    "seeds": 2,
    "recipe": {"batch_size": 32, "lr": 3e-3, "warmup_epochs": 0},
}


@dataclass
class AblationSettings:
    """Everything that defines an ablation (``None`` = the default, or the quick default)."""

    component: str | Component
    base: str | ArchConfig | None = None
    flops_target: str | int | float | None = None
    tolerance: float = DEFAULT_TOLERANCE
    resolution: Any = None
    seeds: int | Sequence[int] | None = None
    data: str | None = None
    subset: int | None = None
    val_subset: int | None = None
    epochs: int | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    backend: str | None = None  # "none" skips latency
    name: str | None = None
    storage: str | None = None
    quick: bool = False
    allow_widths: bool = True
    #: change depths only in the stages the variants change (the paper's protocol scales the
    #: ablated stages; by default any stage may change, which lands closer to the budget)
    ablated_depths_only: bool = False


@dataclass
class PlannedVariant:
    variant: Variant
    match: MatchResult

    @property
    def arch(self) -> ArchConfig:
        return self.match.matched


@dataclass
class Plan:
    """A resolved ablation: its component, base, budget and every variant matched to it."""

    component: Component
    base: ArchConfig
    resolution: tuple[int, int]
    target: int
    tolerance: float
    variants: list[PlannedVariant]
    seeds: list[int]
    data: dict[str, Any]
    recipe: dict[str, Any]
    backend: str | None
    quick: bool
    allow_widths: bool = True
    ablated_depths_only: bool = False
    cost_calls: int = 0

    @property
    def settings_key(self) -> str:
        blob = json.dumps(
            {
                "component": self.component.name,
                "variants": [v.to_dict() for v in self.component.variants],
                "allow_widths": self.allow_widths,
                # only when set, so ablations stored before the option keep their names
                **({"ablated_depths_only": True} if self.ablated_depths_only else {}),
                "base": self.base.to_dict(),
                "target": self.target,
                "tolerance": self.tolerance,
                "data": self.data,
                "recipe": self.recipe,
                "backend": self.backend,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def default_name(self) -> str:
        return f"{self.component.name}{'-quick' if self.quick else ''}-{self.settings_key[:6]}"


def _seed_list(seeds: int | Sequence[int] | None) -> list[int]:
    if seeds is None:
        seeds = 3
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, not {seeds}")
        return list(range(seeds))
    out = sorted({int(s) for s in seeds})
    if not out:
        raise ConfigError("give at least one seed")
    return out


def _pick(user: Any, quick: bool, key: str, default: Any) -> Any:
    if user is not None:
        return user
    return QUICK[key] if quick else default


def _layered(user: Any, quick: bool, key: str, from_file: Any, default: Any) -> Any:
    """The command line wins, then ``--quick``, then the variant file, then the default."""
    if user is not None:
        return user
    if quick:
        return QUICK[key]
    return from_file if from_file is not None else default


def _resolution(settings: AblationSettings, comp: Component) -> tuple[int, int]:
    return parse_resolution(
        _layered(settings.resolution, settings.quick, "resolution", comp.resolution, 224)
    )


def make_recipe(settings: AblationSettings) -> Any:
    """The proxy recipe: ProxyRecipe defaults, then the quick setting, then the user's changes."""
    from ..training.proxy import ProxyRecipe

    values = dict(ProxyRecipe().to_dict())
    if settings.quick:
        values.update(QUICK["recipe"])
        values["epochs"] = QUICK["epochs"]
    values.update(settings.recipe or {})
    if settings.epochs is not None:
        values["epochs"] = settings.epochs
    return ProxyRecipe.from_dict(values)


def plan_ablation(
    settings: AblationSettings,
    cost: CostFn | None = None,
    num_classes: int | None = None,
    recipe: dict[str, Any] | None = None,
    stored: Callable[[Plan], dict[str, MatchResult]] | None = None,
) -> Plan:
    """Resolve the settings and match every variant to the FLOPs budget (no training).

    ``num_classes`` is the training data's class count (the head's cost depends on it); without
    it the base's own count is used (1000 for the presets, as in the paper). ``stored`` returns
    matches already made for this plan (a rerun), which are used instead of counting again.
    """
    comp = settings.component
    comp = comp if isinstance(comp, Component) else get_component(comp)
    q = settings.quick
    resolution = _resolution(settings, comp)
    base_spec = _layered(settings.base, q, "base", comp.base, DEFAULT_BASE)
    base = resolve_arch(base_spec, resolution=resolution, num_classes=num_classes)
    target_raw = _layered(settings.flops_target, q, "flops_target", comp.flops_target, None)
    target = parse_flops(target_raw) if target_raw is not None else default_target(resolution)
    data_spec = _pick(settings.data, q, "data", DEFAULT_DATA)
    backend = _pick(settings.backend, False, "backend", DEFAULT_BACKEND)
    if backend in ("none", ""):
        backend = None
    plan = Plan(
        component=comp,
        base=base,
        resolution=resolution,
        target=target,
        tolerance=settings.tolerance,
        variants=[],
        seeds=_seed_list(_pick(settings.seeds, q, "seeds", 3)),
        data={
            "spec": data_spec,
            "resolution": list(resolution),
            "subset": settings.subset,
            "val_subset": settings.val_subset,
            "num_classes": base.num_classes,
        },
        recipe=recipe or {},
        backend=backend,
        quick=q,
        allow_widths=settings.allow_widths,
        ablated_depths_only=settings.ablated_depths_only,
    )
    known = stored(plan) if stored is not None else {}
    cached = cost if isinstance(cost, CachedCost) else CachedCost(cost)
    for v in comp.variants:
        start = v.apply(base)
        m = known.get(v.name)
        if m is None or m.start != start:
            m = match_flops(
                start,
                target,
                settings.tolerance,
                cached,
                allow_widths=settings.allow_widths,
                depth_stages=v.changed_stages(base) if settings.ablated_depths_only else None,
                name=f"variant {v.name!r}",
            )
        plan.variants.append(PlannedVariant(v, m))
    plan.cost_calls = cached.calls
    return plan


# -- the store ---------------------------------------------------------------------------------


def _register(session: Session, plan: Plan, name: str) -> int:
    """Create (or check) the ablation and its variants; returns the ablation id."""
    from ..cost import count_cost
    from ..store import Architecture, upsert_architecture
    from ..store.ablations import Ablation, AblationVariant, as_json

    key = plan.settings_key
    row = session.scalar(select(Ablation).where(Ablation.name == name))
    if row is not None and row.settings_key != key:
        raise _name_taken(row)
    if row is None:
        h, w = plan.resolution
        row = Ablation(
            name=name,
            component=plan.component.name,
            description=plan.component.help,
            source=plan.component.source,
            base_config=plan.base.to_json(),
            resolution=f"{h}x{w}",
            flops_target=plan.target,
            tolerance=plan.tolerance,
            data=as_json(plan.data),
            recipe=as_json(plan.recipe),
            backend=plan.backend,
            seeds=as_json(plan.seeds),
            settings_key=key,
        )
        session.add(row)
        session.flush()
    row.seeds = as_json(plan.seeds)
    row.status = "running"
    row.updated_at = db.utcnow()
    existing = {v.name: v for v in row.variants}
    for pos, pv in enumerate(plan.variants):
        m = pv.match
        known = session.get(Architecture, m.matched.hash)
        if known is None or known.flops is None:
            # count_cost is memoised, so this is the report the matcher already paid for.
            upsert_architecture(session, m.matched, count_cost(m.matched))
        session.flush()  # the variant row's foreign key needs the architecture row first
        vrow = existing.get(pv.variant.name)
        if vrow is not None:
            continue
        vrow = AblationVariant(
            ablation_id=row.id,
            position=pos,
            name=pv.variant.name,
            description=pv.variant.description,
            baseline=pv.variant is plan.component.baseline,
            changes=as_json(pv.variant.to_dict()),
            arch_hash=m.matched.hash,
            start_depths=",".join(map(str, m.start.depths)),
            start_widths=",".join(map(str, m.start.widths)),
            start_flops=m.start_flops,
            depths=",".join(map(str, m.matched.depths)),
            widths=",".join(map(str, m.matched.widths)),
            adjustment=m.adjustment(),
            flops=m.flops,
            params=m.params,
            rel_error=m.rel_error,
        )
        session.add(vrow)
    session.flush()
    return row.id


def _name_taken(row: Any) -> EdgeExploreError:
    return EdgeExploreError(
        f"an ablation named {row.name!r} already exists with other settings "
        f"(component {row.component}, FLOPs target {row.flops_target}, data {row.data}, or "
        "another recipe, base or backend); pass another --name"
    )


def _stored_matches(url: str, name: str, plan: Plan) -> dict[str, MatchResult]:
    """The matches stored by an earlier run of this very ablation (same name, same settings)."""
    from ..store import Architecture
    from ..store.ablations import Ablation

    out: dict[str, MatchResult] = {}
    with db.session_scope(url) as s:
        ab = s.scalar(select(Ablation).where(Ablation.name == name))
        if ab is None:
            return out
        if ab.settings_key != plan.settings_key:
            raise _name_taken(ab)
        variants = {v.name: v for v in plan.component.variants}
        for row in ab.variants:
            arch_row = s.get(Architecture, row.arch_hash)
            if row.name not in variants or arch_row is None:
                continue
            start = variants[row.name].apply(plan.base)
            out[row.name] = MatchResult(
                start,
                arch_row.arch,
                row.flops,
                row.params,
                row.start_flops,
                plan.target,
                plan.tolerance,
                0,
            )
    return out


# -- running -----------------------------------------------------------------------------------

Printer = Callable[[str], None]


def run_ablation(
    settings: AblationSettings,
    echo: Printer | None = None,
    progress: bool = True,
    cost: CostFn | None = None,
) -> AblationReport:
    """Plan, store, time and train an ablation; returns its report (see :mod:`.report`)."""
    from ..data import load_data

    echo = echo or print
    recipe_obj = make_recipe(settings)
    recipe = recipe_obj.to_dict()
    q = settings.quick
    comp = settings.component
    if not isinstance(comp, Component):
        comp = get_component(comp)
        settings = dataclasses.replace(settings, component=comp)
    data_spec = _pick(settings.data, q, "data", DEFAULT_DATA)
    url = db.normalise_url(settings.storage)
    db.get_engine(url)  # an unwritable or corrupt store fails before any work
    # The head's cost depends on the class count, so the data is loaded before matching.
    resolution = _resolution(settings, comp)
    started = time.perf_counter()
    data = load_data(
        data_spec,
        resolution=resolution,
        subset=settings.subset,
        val_subset=settings.val_subset,
        seed=0,
    )
    echo(f"Data: {data.describe()} ({time.perf_counter() - started:.1f}s)")
    plan = plan_ablation(
        settings,
        cost=cost,
        num_classes=data.num_classes,
        recipe=recipe,
        stored=lambda p: _stored_matches(url, settings.name or p.default_name(), p),
    )
    name = settings.name or plan.default_name()
    echo(
        f"Ablation {name!r}: {plan.component.name}, {len(plan.variants)} variants matched to "
        f"{plan.target / 1e9:.4g} GFLOPs ±{plan.tolerance:.0%} at "
        f"{plan.resolution[0]}x{plan.resolution[1]}:"
    )
    for pv in plan.variants:
        m = pv.match
        echo(
            f"  {pv.variant.name}: {m.adjustment()} → {m.flops / 1e9:.4f} G "
            f"({m.rel_error:+.1%}), {m.params / 1e6:.3f} M params"
        )
    with db.session_scope(url) as s:
        ablation_id = _register(s, plan, name)
    _measure_latency(plan, ablation_id, url, echo)
    reused, trained = _run_all(plan, ablation_id, url, data, recipe_obj, echo, progress)
    total = len(plan.variants) * len(plan.seeds)
    echo(f"Runs: reused {reused} of {total} runs, trained {trained}.")
    with db.session_scope(url) as s:
        from ..store.ablations import Ablation

        row = s.get(Ablation, ablation_id)
        row.status = "complete"
        row.updated_at = db.utcnow()
    report = load_report(name, url, seeds=plan.seeds)
    report.reused, report.trained, report.total = reused, trained, total
    return report


def _latency_spec(plan: Plan) -> LatencySpec | None:
    return LatencySpec(plan.backend) if plan.backend is not None else None


def _measure_latency(plan: Plan, ablation_id: int, url: str, echo: Printer) -> None:
    """Time each variant once for the table; an unusable backend leaves the column empty
    (the runs still train) rather than stopping the ablation."""
    spec = _latency_spec(plan)
    if spec is None:
        return
    from ..store.ablations import AblationVariant, as_json

    with db.session_scope(url) as s:
        todo = [
            (v.id, v.name)
            for v in s.scalars(
                select(AblationVariant).where(
                    AblationVariant.ablation_id == ablation_id, AblationVariant.latency_ms.is_(None)
                )
            )
        ]
    by_name = {pv.variant.name: pv for pv in plan.variants}
    for vid, vname in todo:
        pv = by_name.get(vname)
        if pv is None:
            continue
        try:
            meas = spec.measure(pv.arch, url)
            ms, detail, err = float(meas.median_ms), as_json(meas.to_dict()), None
            echo(f"  latency {vname}: {ms:.2f} ms ({plan.backend})")
        except EdgeExploreError as e:
            ms, detail, err = None, None, str(e)
            echo(f"  latency {vname}: not measured ({e})")
        with db.session_scope(url) as s:
            v = s.get(AblationVariant, vid)
            v.latency_ms, v.latency, v.latency_error = ms, detail, err


def _training_spec(plan: Plan, recipe: Any, seed: int) -> TrainingSpec:
    d = plan.data
    data = DataSpec(d["spec"], d.get("subset"), d.get("val_subset"), tuple(plan.resolution))
    return TrainingSpec.proxy(recipe, data, seed)


class _RunRow(TrialRow):
    """The row of one (variant, seed) run, linked from ``ablation_runs``.

    A run that trains commits its row as ``running`` first (a crash leaves a trace, and the
    next invocation trains it again); a reused result gets its row together with the result.
    A retried run gets a new row; the failed attempt's row stays as its history.
    """

    def __init__(self, url: str, study: str, variant_id: int, seed: int, training: TrainingSpec,
                 latency: LatencySpec | None, say: Printer) -> None:
        super().__init__(url)
        self.study, self.variant_id, self.seed = study, variant_id, seed
        self.training, self.latency, self.say = training, latency, say

    def _link(self, session: Session) -> None:
        from ..store import get_or_create_environment
        from ..store.ablations import AblationRun

        env = get_or_create_environment(session).id
        row = new_trial_row(self.study, self.training, self.latency, env)
        session.add(row)
        session.flush()
        link = session.scalar(select(AblationRun).where(
            AblationRun.variant_id == self.variant_id, AblationRun.seed == self.seed))
        if link is None:
            session.add(AblationRun(variant_id=self.variant_id, seed=self.seed,
                                    trial_result_id=row.id))
        else:
            link.trial_result_id = row.id
        self.row_id = row.id

    def start(self) -> None:
        with db.session_scope(self.url) as s:
            self._link(s)
        self.say(f"training ({self.training.recipe.get('epochs')} epochs)")

    def write(self, session: Session, outcome: Outcome) -> None:
        from ..store.ablations import AblationRun

        if self.row_id is None:
            self._link(session)
        super().write(session, outcome)
        session.execute(update(AblationRun).where(AblationRun.trial_result_id == self.row_id)
                        .values(reused=outcome.reused))


def _run_all(plan, ablation_id, url, data, recipe_obj, echo, progress) -> tuple[int, int]:
    from ..store import COMPLETE
    from ..store.ablations import STUDY_PREFIX, Ablation, AblationRun, AblationVariant

    reused = trained = 0
    with db.session_scope(url) as s:
        vrows = {
            v.name: (v.id, v.latency_ms)
            for v in s.scalars(
                select(AblationVariant).where(AblationVariant.ablation_id == ablation_id)
            )
        }
        study = STUDY_PREFIX + s.get(Ablation, ablation_id).name
    latency = _latency_spec(plan)
    total = len(plan.variants) * len(plan.seeds)
    done = 0
    # Seed-major order: an interrupted ablation still has whole seeds to compare variants on.
    for seed in plan.seeds:
        training = _training_spec(plan, recipe_obj, seed)
        for pv in plan.variants:
            done += 1
            vid, latency_ms = vrows[pv.variant.name]
            with db.session_scope(url) as s:
                link = s.scalar(
                    select(AblationRun).where(
                        AblationRun.variant_id == vid, AblationRun.seed == seed
                    )
                )
                finished = link is not None and link.result.state in FINISHED
            if finished:
                reused += 1
                continue
            head = f"[{done}/{total}] {pv.variant.name} seed {seed}"
            rec = _RunRow(url, study, vid, seed, training, latency,
                          lambda msg, head=head: echo(f"{head}: {msg}"))
            # a variant the backend could not time trains without latency, as it is tabled
            out = evaluate(pv.arch, rec, training=training, storage=url, data=data,
                           latency=latency if latency_ms is not None else None,
                           progress=progress)
            if out.reused:
                reused += 1
                echo(f"{head}: reused {_pct(out.accuracy)} from an earlier run (#{out.prior.id})")
                continue
            trained += 1
            if out.state == COMPLETE:
                echo(f"    top-1 {_pct(out.accuracy)} in {out.timings['train_seconds']:.1f}s")
            else:
                echo(f"    {out.state}: {out.reason}")
    return reused, trained


def _pct(acc: float | None) -> str:
    return "—" if acc is None else f"{acc * 100:.2f}%"


# -- reading back ------------------------------------------------------------------------------


def load_report(
    name: str, storage: str | None = None, seeds: Sequence[int] | None = None
) -> AblationReport:
    """The table of a stored ablation (``seeds``: which seeds to show; default the last asked)."""
    from ..store.ablations import Ablation

    url = db.normalise_url(storage)
    with db.open_store(url, create=False).session() as s:  # reading never creates a store
        ab = s.scalar(select(Ablation).where(Ablation.name == name))
        if ab is None:
            raise EdgeExploreError(f"no ablation named {name!r} in {db.shown(url)}")
        seeds = list(seeds) if seeds is not None else ab.seed_list
        rows = []
        for v in ab.variants:
            row = VariantRow(
                name=v.name,
                baseline=v.baseline,
                description=v.description,
                adjustment=v.adjustment,
                depths=[int(x) for x in v.depths.split(",")],
                widths=[int(x) for x in v.widths.split(",")],
                params=v.params,
                flops=v.flops,
                rel_error=v.rel_error,
                latency_ms=v.latency_ms,
            )
            for run in v.runs:
                if run.seed not in seeds:
                    continue
                r = run.result
                if r.state == "complete" and r.accuracy is not None:
                    row.accuracies[run.seed] = r.accuracy
                else:
                    row.incomplete[run.seed] = r.state
            for sd in seeds:
                if sd not in row.accuracies and sd not in row.incomplete:
                    row.incomplete[sd] = "not run"
            rows.append(row)
        h, w = (int(x) for x in ab.resolution.split("x"))
        report = AblationReport(
            name=ab.name,
            component=ab.component,
            flops_target=ab.flops_target,
            tolerance=ab.tolerance,
            resolution=(h, w),
            data=json.loads(ab.data),
            recipe=json.loads(ab.recipe),
            backend=ab.backend,
            seeds=seeds,
            rows=rows,
            total=len(rows) * len(seeds),
        )
    report.compute_tests()
    return report
