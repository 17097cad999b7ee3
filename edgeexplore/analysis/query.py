"""Asking the store questions from Python: studies, trials, one trial in full, exports, fronts.

Every function takes ``storage`` (a SQLAlchemy URL or a SQLite path; default
:func:`edgeexplore.store.db.default_url`) and refuses a SQLite file that does not exist instead of
creating an empty one. Listings return dataclasses; pass ``as_frame=True`` for a pandas
DataFrame (pandas is an optional dependency)::

    from edgeexplore.analysis import query
    query.list_studies()
    query.list_trials(study="quickstart", where="latency_ms < 10 and accuracy > 0.6",
                      sort="-accuracy", limit=10)
    query.get_trial(12).curve
    query.pareto_front("quickstart", objectives="accuracy:max,latency_ms:min").front

``where`` and ``sort`` use the filter language of :mod:`edgeexplore.analysis.filters`; the names they may
use are :func:`trial_fields`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, or_, select
from sqlalchemy.exc import DatabaseError

from ..config import BLOCKS, NUM_STAGES
from ..errors import EdgeExploreError
from ..objectives import DEFAULT_OBJECTIVES, Objective
from ..objectives import parse_objectives as _parse
from ..store import COMPLETE, Architecture, Environment, TrialResult, db, trial_latency
from ..store.trial_latency import PREDICTED, TrialLatency
from ..study_summary import StudySummary, iso_time, optuna_study_attrs, summarise_studies
from ..tabular import to_csv, to_json
from .filters import Field, compile_filter, compile_sort
from .pareto import ParetoResult, ReferencePoint, analyse

T, A = TrialResult, Architecture

# -- the store ----------------------------------------------------------------------------------

def open_store(storage: str | None = None) -> Engine:
    """The engine of an existing store; a missing file or one without our tables is an error,
    never created or altered (:func:`edgeexplore.store.open_store` with ``create=False``)."""
    try:
        return db.open_store(storage, create=False).engine
    except DatabaseError as e:
        url = db.shown(db.normalise_url(storage))
        raise EdgeExploreError(f"cannot read the database {url}: {db.error_reason(e)}") from None


def _full_accuracy_of(arch_hash: Any):
    from ..store.trainings import Training as F

    return (select(F.best_top1)
            .where(F.arch_hash == arch_hash, F.kind == "full", F.state == COMPLETE)
            .order_by(F.id.desc()).limit(1))


def full_accuracy():
    """``full_accuracy``: best top-1 of the latest complete full training (``trainings``) of the
    trial's architecture; None where it was never trained in full."""
    return _full_accuracy_of(T.arch_hash).scalar_subquery()


@cache
def trial_fields() -> dict[str, Field]:
    """Every name ``where`` and ``sort`` accept, with its kind and column."""
    out: dict[str, Field] = {}

    def add(name: str, kind: Any, expr: Any, help: str = "") -> None:
        out[name] = Field(name, kind, expr, help)

    for name in ("id", "number", "seed", "epochs", "reused_from", "flops", "params",
                 "activations"):
        add(name, "integer", getattr(T, name))
    for name in ("accuracy", "latency_ms", "latency_p90_ms", "latency_cv", "energy_mj",
                 "images_per_second", "sample_seconds", "cost_seconds", "latency_seconds",
                 "train_seconds", "store_seconds", "total_seconds"):
        add(name, "number", getattr(T, name))
    add("full_accuracy", "number", full_accuracy(), "top-1 of a full training (trainings)")
    for name in ("study", "state", "backend", "data", "resolution", "reason", "arch_hash"):
        add(name, "text", getattr(T, name))
    add("latency_source", "text", trial_latency.source_of(T.id),
        '"measured" or "predicted" (backend: predicted)')
    add("macro", "text", A.macro)
    add("num_classes", "integer", A.num_classes)
    add("depths", "text", A.depths, 'e.g. "1,1,3,2"')
    add("widths", "text", A.widths, 'e.g. "36,72,144,288"')
    add("device", "text", Environment.device, 'e.g. "cpu"')
    option_kinds: dict[str, str] = {}
    for spec in BLOCKS.values():
        for opt, ospec in spec.options.items():
            d = ospec.default
            kind = "bool" if isinstance(d, bool) else "integer" if isinstance(d, int) else (
                "number" if isinstance(d, float) else "text")
            option_kinds.setdefault(opt, kind)
    for i in range(1, NUM_STAGES + 1):
        for attr, kind in (("depth", "integer"), ("width", "integer"), ("heads", "integer"),
                           ("mlp_ratio", "number"), ("sample_rate", "integer"),
                           ("block", "text")):
            add(f"stage{i}.{attr}", kind, getattr(A, f"stage{i}_{attr}"))
        options_col = getattr(A, f"stage{i}_options")
        for opt, kind in sorted(option_kinds.items()):
            # The JSON path is built from the whitelist above and bound as a parameter.
            add(f"stage{i}.options.{opt}", kind, func.json_extract(options_col, f"$.{opt}"))
    return out


def _base_select(*columns: Any):
    return (
        select(*columns)
        .select_from(T)
        .outerjoin(A, T.arch_hash == A.hash)
        .outerjoin(Environment, T.environment_id == Environment.id)
    )


def _study_names(study: str | Sequence[str] | None) -> list[str]:
    """The study names a ``study`` argument means (none: every study)."""
    return [] if study is None else [study] if isinstance(study, str) else list(study)


def _studies_clause(study: str | Sequence[str] | None):
    return None if study is None else T.study.in_(_study_names(study))


def _check_studies(engine: Engine, study: str | Sequence[str] | None) -> None:
    if study is None:
        return
    names = _study_names(study)
    with engine.connect() as conn:
        known = set(conn.scalars(select(T.study).distinct()))
    missing = [n for n in names if n not in known]
    if missing:
        have = ", ".join(sorted(known)) or "none"
        raise EdgeExploreError(f"no study named {missing[0]!r} in the store (studies: {have})")


def _frame(rows: list[Any]):
    try:
        import pandas as pd
    except ImportError:
        raise EdgeExploreError("as_frame=True needs pandas (uv add pandas)") from None
    return pd.DataFrame([asdict(r) if hasattr(r, "__dataclass_fields__") else r for r in rows])


# -- studies ------------------------------------------------------------------------------------

def list_studies(storage: str | None = None, as_frame: bool = False):
    """Every study in the store: trial counts by state, objectives and best values."""
    studies = summarise_studies(open_store(storage))
    return _frame(studies) if as_frame else studies


# -- trials -------------------------------------------------------------------------------------

@dataclass
class TrialSummary:
    """One row of ``trials list``: identity, state, headline metrics and the shape."""

    id: int
    study: str
    number: int | None
    state: str
    accuracy: float | None
    full_accuracy: float | None
    latency_ms: float | None
    latency_source: str | None  # "measured" or "predicted"
    flops: int | None
    params: int | None
    energy_mj: float | None
    backend: str | None
    resolution: str | None
    arch_hash: str | None
    blocks: str | None  # "lgl,lgl,lgl,lgl"
    depths: str | None
    widths: str | None


_SUMMARY_COLUMNS = [
    T.id, T.study, T.number, T.state, T.accuracy, full_accuracy().label("full_accuracy"),
    T.latency_ms, trial_latency.source_of(T.id).label("latency_source"), T.flops, T.params,
    T.energy_mj,
    T.backend, T.resolution, T.arch_hash,
    (A.stage1_block + "," + A.stage2_block + "," + A.stage3_block + "," + A.stage4_block)
    .label("blocks"),
    A.depths, A.widths,
]


def _trial_query(columns: list[Any], study, where, sort, limit, states=None):
    fields_ = trial_fields()
    q = _base_select(*columns).where(compile_filter(where, fields_))
    clause = _studies_clause(study)
    if clause is not None:
        q = q.where(clause)
    if states is not None:
        q = q.where(T.state.in_(list(states)))
    q = q.order_by(*compile_sort(sort, fields_), T.id)
    if limit is not None:
        if limit < 0:
            raise EdgeExploreError(f"--limit must be zero or positive, not {limit}")
        if limit > 0:  # 0 means no limit, as in `pareto --limit 0`
            q = q.limit(limit)
    return q


def list_trials(
    study: str | Sequence[str] | None = None,
    where: str | None = None,
    sort: str | Sequence[str] | None = None,
    limit: int | None = None,
    storage: str | None = None,
    as_frame: bool = False,
):
    """Trials matching ``where`` (filter language), sorted by ``sort`` (``-`` = descending)."""
    engine = open_store(storage)
    _check_studies(engine, study)
    q = _trial_query(_SUMMARY_COLUMNS, study, where, sort, limit)
    with engine.connect() as conn:
        rows = [TrialSummary(*r) for r in conn.execute(q)]
    return _frame(rows) if as_frame else rows


@dataclass
class TrialDetail:
    """Everything stored about one trial (``trials show``)."""

    id: int
    study: str
    number: int | None
    state: str
    seed: int
    reason: str | None
    arch_hash: str | None
    description: str | None
    config: dict[str, Any] | None
    stages: list[dict[str, Any]]
    metrics: dict[str, Any]  # headline columns plus the JSON extras
    cost: dict[str, Any]  # params, flops, activations, per-stage FLOPs
    timings: dict[str, float | None]
    curve: list[dict[str, Any]]
    latency: list[dict[str, Any]]  # every cached measurement of the architecture
    #: whether ``latency_ms`` was measured or predicted, with the prediction and the
    #: predictor's cross-validated error (``trial_latency``); None without latency
    latency_source: dict[str, Any] | None
    trainings: list[dict[str, Any]]  # its full (and longer-proxy) trainings, newest first
    backend: str | None
    backend_settings: dict[str, Any]
    data: str | None
    resolution: str | None
    recipe: dict[str, Any]
    environment: dict[str, Any]
    reused_from: int | None
    started_at: str | None
    finished_at: str | None


def get_trial(trial_id: int, storage: str | None = None) -> TrialDetail:
    """One trial in full: stages, metrics, latency per backend and device, curve, environment."""
    engine = open_store(storage)
    with engine.connect() as conn:
        # SQLite ids are 64-bit; a larger number cannot be bound, and names no trial anyway
        fits = -(2**63) <= trial_id < 2**63
        t = conn.execute(select(T.__table__).where(T.id == trial_id)).mappings().first() if fits \
            else None
        if t is None:
            last = conn.scalar(select(func.max(T.id)))
            have = f"ids run from 1 to {last}" if last else "the store has no trials"
            raise EdgeExploreError(f"no trial with id {trial_id} ({have})")
        a = None
        if t["arch_hash"]:
            a = conn.execute(select(A.__table__).where(A.hash == t["arch_hash"])).mappings().first()
        env = None
        if t["environment_id"] is not None:
            env = conn.execute(
                select(Environment.__table__).where(Environment.id == t["environment_id"])
            ).mappings().first()
        latency = _latency_rows(conn, t["arch_hash"]) if t["arch_hash"] else []
        source = conn.execute(select(*(getattr(TrialLatency, c) for c in trial_latency.COLUMNS))
                              .where(TrialLatency.trial_id == trial_id)).mappings().first()
        trainings = _training_rows(conn, t["arch_hash"]) if t["arch_hash"] else []
    config = json.loads(a["config"]) if a else None
    stages = []
    if config:
        for i, st in enumerate(config.get("stages", []), 1):
            stages.append({"stage": i, **st})
    metrics = {k: t[k] for k in ("accuracy", "latency_ms", "latency_p90_ms", "latency_cv",
                                 "energy_mj", "epochs", "images_per_second")}
    full = [r for r in trainings if r["kind"] == "full" and r["state"] == COMPLETE]
    metrics["full_accuracy"] = full[0]["best_top1"] if full else None  # as the field is
    metrics.update({k: v for k, v in _loads(t["metrics"], {}).items() if k not in metrics})
    cost = {k: t[k] if t[k] is not None else (a[k] if a else None)
            for k in ("params", "flops", "activations")}
    cost["per_stage_flops"] = _loads(a["per_stage_flops"], {}) if a else {}
    env_d = {}
    if env is not None:
        env_d = {k: v for k, v in env.items() if k not in ("id", "details", "fingerprint")}
        env_d["created_at"] = iso_time(env_d.get("created_at"))
    return TrialDetail(
        id=t["id"], study=t["study"], number=t["number"], state=t["state"], seed=t["seed"],
        reason=t["reason"], arch_hash=t["arch_hash"], description=a["description"] if a else None,
        config=config, stages=stages, metrics=metrics, cost=cost,
        timings={k: t[k] for k in ("sample_seconds", "cost_seconds", "latency_seconds",
                                   "train_seconds", "store_seconds", "total_seconds")},
        curve=_loads(t["curve"], []), latency=latency,
        latency_source=dict(source) if source else None, trainings=trainings,
        backend=t["backend"],
        backend_settings=_loads(t["backend_settings"], {}), data=t["data"],
        resolution=t["resolution"], recipe=_loads(t["recipe"], {}), environment=env_d,
        reused_from=t["reused_from"], started_at=iso_time(t["started_at"]),
        finished_at=iso_time(t["finished_at"]),
    )


def _loads(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return default


#: latency-cache columns ``trials show`` lists
LATENCY_COLUMNS = ("backend", "device", "batch", "threads", "input_shape", "median_ms", "mean_ms",
                   "p10_ms", "p90_ms", "iqr_ms", "cv", "count", "energy_median_j", "created_at")


def _latency_rows(conn: Any, arch_hash: str) -> list[dict[str, Any]]:
    from ..store.latency import LatencyMeasurement as M

    return _dicts(conn.execute(select(*(getattr(M, c) for c in LATENCY_COLUMNS))
                               .where(M.arch_hash == arch_hash).order_by(M.backend, M.id)))


#: ``trainings`` columns ``trials show`` lists
TRAINING_COLUMNS = ("id", "kind", "state", "epochs_done", "epochs", "best_top1", "best_top5",
                    "final_top1", "final_top5", "spec_key", "checkpoint", "finished_at")


def _training_rows(conn: Any, arch_hash: str) -> list[dict[str, Any]]:
    from ..store.trainings import Training as F

    return _dicts(conn.execute(select(*(getattr(F, c) for c in TRAINING_COLUMNS))
                               .where(F.arch_hash == arch_hash).order_by(F.id.desc())))


def _dicts(result: Any) -> list[dict[str, Any]]:
    """Rows as dicts, timestamps as ISO text."""
    return [{k: iso_time(v) if hasattr(v, "isoformat") else v for k, v in r.items()}
            for r in result.mappings()]


# -- export -------------------------------------------------------------------------------------

_JSON_COLUMNS = {"metrics", "curve", "backend_settings", "recipe", "config", "per_stage_flops"}


def export_trials(
    format: str = "csv",
    output: str | Path | None = None,
    study: str | Sequence[str] | None = None,
    where: str | None = None,
    sort: str | Sequence[str] | None = None,
    limit: int | None = None,
    storage: str | None = None,
) -> str:
    """Every stored column of the matching trials, whether their latency was measured or
    predicted (``latency_source``) and their architecture, as CSV or JSON.

    Returns the text, also written to ``output`` when given. In CSV the JSON columns (config,
    curve, metrics, recipe, ...) stay JSON text; in JSON they are nested objects.
    """
    if format not in ("csv", "json"):
        raise EdgeExploreError(f"unknown export format {format!r} (use csv or json)")
    engine = open_store(storage)
    _check_studies(engine, study)
    arch_cols = [c.label(f"arch_{c.name}") if c.name in T.__table__.c else c
                 for c in A.__table__.c if c.name != "hash"]
    source = trial_latency.source_of(T.id).label("latency_source")
    q = _trial_query([*T.__table__.c, source, *arch_cols], study, where, sort, limit)
    with engine.connect() as conn:
        result = conn.execute(q)
        keys = list(result.keys())
        rows = [dict(zip(keys, r)) for r in result]
    for r in rows:
        for k in _JSON_COLUMNS & r.keys():
            r[k] = _loads(r[k], r[k])
    # one rule for every CSV/JSON the program writes (nested values stay JSON text in CSV)
    text = to_csv(rows, keys) if format == "csv" else to_json(rows, keys)
    if output is not None:
        db.refuse_overwriting(output, storage)
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as e:
            raise EdgeExploreError(f"cannot write {output}: {e.strerror}") from None
    return text


# -- Pareto -------------------------------------------------------------------------------------

def parse_objectives(spec: str | Sequence[str] | None) -> list[Objective]:
    """``"accuracy:max,latency_ms:min"`` → two or three objectives over stored numeric fields;
    a missing direction takes the metric's usual one."""
    valid = {n for n, f in trial_fields().items() if f.kind in ("number", "integer")
             and "." not in n}
    out = _parse(spec or DEFAULT_OBJECTIVES, valid)
    if not 2 <= len(out) <= 3:
        raise EdgeExploreError(f"give two or three objectives, not {len(out)} ({spec})")
    return out


def study_objectives(study: str, storage: str | None = None) -> list[Objective] | None:
    """The objectives a study optimised (from Optuna's tables), when they are stored fields."""
    objs = optuna_study_attrs(open_store(storage)).get(study, {}).get("objectives")
    if not objs or not 2 <= len(objs) <= 3:
        return None
    try:
        return parse_objectives(objs)
    except EdgeExploreError:
        return None


def pareto_front(
    study: str | Sequence[str] | None = None,
    objectives: str | Sequence[str] | None = None,
    backend: str | None = None,
    where: str | None = None,
    presets: Sequence[str] | bool = False,
    storage: str | None = None,
) -> ParetoResult:
    """The non-dominated complete trials of one or several studies.

    ``objectives`` defaults to what the (first) study optimised, else accuracy:max,latency_ms:min.
    With a latency objective the trials must share one latency backend: pick it with ``backend``
    when the store holds several. ``presets`` (True for edgevit_xxs/xs/s, or a list of names)
    adds reference points (``result.references``) at the trials' input size and class count:
    those a stored trial answers are complete; :func:`edgeexplore.evaluation.place_presets`
    measures the others (``result.preset_requests``, see :func:`preset_requests`).
    """
    engine = open_store(storage)
    _check_studies(engine, study)
    names = _study_names(study)
    if objectives is None and names:
        objs = study_objectives(names[0], storage) or parse_objectives(None)
    else:
        objs = parse_objectives(objectives)
    fields_ = trial_fields()
    cols = [fields_[o.name].expr for o in objs]
    # the front is made of measured latencies: a predicted one is left out (and counted)
    source = fields_["latency_source"].expr
    measured = ([or_(source.is_(None), source != PREDICTED)]
                if any(o.name == "latency_ms" for o in objs) else [])
    conds = [T.state == COMPLETE, *[c.is_not(None) for c in cols], *measured]
    clause = _studies_clause(study)
    if clause is not None:
        conds.append(clause)
    if backend is not None:
        conds.append(T.backend == backend)
    joined = bool(where and where.strip())
    if joined:
        conds.append(compile_filter(where, fields_))
    which = conds[1 + len(cols) + len(measured):]  # which trials, whatever their values

    def over(*columns: Any):
        """A select of the trials: joined to their architecture and environment when the filter
        may name their fields (each query of ``conds`` must, or it is a cartesian product),
        else none (100k rows stream noticeably faster without)."""
        return _base_select(*columns) if joined else select(*columns).select_from(T)

    base = over(T.id, T.study, *cols)
    timed = any(o.name.startswith("latency") or o.name == "energy_mj" for o in objs)
    with engine.connect() as conn:
        rows = _fetch_tuples(conn, base.where(*conds).order_by(T.id))
        unmeasured = conn.scalar(over(func.count()).where(
            T.state == COMPLETE, *[c.is_not(None) for c in cols], source == PREDICTED, *which)
        ) if measured else 0
        if not rows:
            where_txt = f" on backend {backend!r}" if backend else ""
            raise EdgeExploreError(
                f"no complete trials{where_txt} have values for "
                f"{', '.join(o.name for o in objs)}"
                + (f" with a measured latency ({unmeasured} have a predicted one)"
                   if unmeasured else "")
            )
        backends = sorted(b for b in conn.scalars(over(T.backend).where(*conds).distinct()) if b)
        # e.g. trials never trained in full, for full_accuracy: said, not silently dropped
        left_out = conn.scalar(over(func.count()).where(T.state == COMPLETE, *which)) - len(rows)
        # the shape the presets are measured at: the trials' most common input and classes
        shape = conn.execute(
            select(T.resolution, A.num_classes, func.count().label("n"))
            .select_from(T).join(A, T.arch_hash == A.hash)
            .where(T.id.in_(select(base.where(*conds).subquery().c.id)))
            .group_by(T.resolution, A.num_classes).order_by(func.count().desc()).limit(1)
        ).first() if presets else None
    if timed and backend is None and len(backends) > 1:
        raise EdgeExploreError(
            f"the trials were timed on several backends ({', '.join(backends)}); "
            "pick one with --backend"
        )
    values = np.array([r[2:] for r in rows], dtype=float)
    result = analyse(values, objs, ids=[r[0] for r in rows], groups=[r[1] for r in rows])
    result.left_out, result.predicted = left_out - unmeasured, unmeasured
    if presets:
        chosen = list(PRESET_NAMES) if presets is True else list(presets)
        result.preset_requests = preset_requests(
            objs, chosen, resolution=(shape[0] if shape and shape[0] else "224x224"),
            num_classes=int(shape[1]) if shape and shape[1] is not None else 1000,
            backend=backend or (backends[0] if backends else None),
            storage=storage, studies=names or sorted(set(result.groups)),
        )
        result.references = [r.point for r in result.preset_requests]
    return result


def _fetch_tuples(conn: Any, stmt: Any) -> list[tuple]:
    """All rows of ``stmt`` as plain tuples; on SQLite straight from the driver's cursor.

    SQLAlchemy's per-row processing costs more than SQLite itself at 100k rows, and Pareto
    columns need no type conversion. The statement is compiled with bound parameters (the
    driver binds them), exactly as ``conn.execute`` would send it.
    """
    if conn.dialect.name != "sqlite" or conn.dialect.paramstyle != "qmark":
        return [tuple(r) for r in conn.execute(stmt)]
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    args = [params[name] for name in compiled.positiontup or ()]
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(compiled.string, args)
        return cursor.fetchall()
    finally:
        cursor.close()


#: the reference architectures drawn by default
PRESET_NAMES = ("edgevit_xxs", "edgevit_xs", "edgevit_s")


@dataclass
class PresetRequest:
    """A preset to draw beside a front, as the store describes the trials it is compared with.

    ``point`` is what gets drawn: complete when a stored trial of the very same architecture
    (``stored_trial``) has every objective, else to be measured by
    :func:`edgeexplore.evaluation.place_presets` on ``backend`` with ``backend_settings`` and,
    for accuracy, with ``training`` (the latest complete trial's study, recipe, data and seed;
    None when no such trial exists).
    """

    point: ReferencePoint
    config: Any  # ArchConfig
    backend: str | None
    backend_settings: dict[str, Any]
    training: dict[str, Any] | None
    stored_trial: int | None = None


def preset_requests(
    objectives: Sequence[Objective],
    names: Sequence[str] = PRESET_NAMES,
    resolution: str | tuple[int, int] = "224x224",
    num_classes: int = 1000,
    backend: str | None = None,
    storage: str | None = None,
    studies: Sequence[str] = (),
) -> list[PresetRequest]:
    """The presets at the trials' resolution and class count, with what the store knows.

    A preset the studies already evaluated (a complete trial of the very same architecture,
    e.g. queued by the recipe's ``enqueue:``) takes that trial's stored values: same recipe,
    data, backend and device. The others are left to the evaluation pipeline; nothing here
    counts, times or trains.
    """
    from ..config import get_preset, parse_resolution

    res = parse_resolution(resolution)
    need = [o.name for o in objectives]
    settings = _backend_settings(backend, studies, storage) if backend else {}
    training = _study_training(studies, storage) if "accuracy" in need else None
    out = []
    for name in names:
        cfg = get_preset(name).replace(resolution=res, num_classes=num_classes)
        stored = _stored_preset(cfg.hash, need, backend, studies, storage)
        if stored is not None:
            trial_id, values = stored
            point = ReferencePoint(name, values, f"stored trial {trial_id}")
        else:
            trial_id, point = None, ReferencePoint(name, dict.fromkeys(need), "not measured")
            if "full_accuracy" in need:  # a preset trained in full (`train`) is a reference
                point.values["full_accuracy"] = _full_training(cfg.hash, storage)
        out.append(PresetRequest(point, cfg, backend, settings, training, trial_id))
    return out


def _stored_preset(arch_hash: str, need: list[str], backend: str | None,
                   studies: Sequence[str], storage: str | None):
    cols = [trial_fields()[n].expr for n in need]
    q = select(T.id, *cols).where(T.arch_hash == arch_hash, T.state == COMPLETE,
                                  *[c.is_not(None) for c in cols])
    if studies:
        q = q.where(T.study.in_(list(studies)))
    if backend is not None:
        q = q.where(T.backend == backend)
    with open_store(storage).connect() as conn:
        row = conn.execute(q.order_by(T.id).limit(1)).first()
    if row is None:
        return None
    return row[0], {n: float(v) for n, v in zip(need, row[1:])}


def _full_training(arch_hash: str, storage: str | None) -> float | None:
    """``full_accuracy`` of an architecture that may be no trial (a preset trained in full)."""
    with open_store(storage).connect() as conn:
        return conn.scalar(_full_accuracy_of(arch_hash))


def _backend_settings(backend: str, studies: Sequence[str], storage: str | None
                      ) -> dict[str, Any]:
    """The settings the trials were timed with on ``backend`` (batch and threads included)."""
    q = select(T.backend_settings).where(T.backend == backend, T.backend_settings.is_not(None))
    if studies:
        q = q.where(T.study.in_(list(studies)))
    with open_store(storage).connect() as conn:
        return _loads(conn.scalar(q.order_by(T.id.desc()).limit(1)), {})


def _study_training(studies: Sequence[str], storage: str | None) -> dict[str, Any] | None:
    """The study, proxy recipe, data and seed of the latest complete trial of ``studies``."""
    engine = open_store(storage)
    with engine.connect() as conn:
        row = conn.execute(
            select(T.study, T.recipe, T.seed).where(
                T.study.in_(list(studies)), T.state == COMPLETE, T.recipe.is_not(None))
            .order_by(T.id.desc()).limit(1)
        ).first()
    if row is None:
        return None
    study_recipe = optuna_study_attrs(engine).get(row[0], {}).get("recipe") or {}
    return {"study": row[0], "recipe": json.loads(row[1]), "data": study_recipe.get("data"),
            "seed": int(study_recipe.get("seed", row[2] or 0))}


def trial_summaries(ids: Sequence[int], storage: str | None = None) -> dict[int, TrialSummary]:
    """The ``trials list`` rows of the given ids (e.g. a front's), keyed by id."""
    engine = open_store(storage)
    out: dict[int, TrialSummary] = {}
    ids = list(ids)
    with engine.connect() as conn:
        # SQLite caps bound parameters per statement; fronts are small but chunk anyway.
        for start in range(0, len(ids), 500):
            q = _base_select(*_SUMMARY_COLUMNS).where(T.id.in_(ids[start:start + 500]))
            out.update({r[0]: TrialSummary(*r) for r in conn.execute(q)})
    return out


__all__ = [
    "DEFAULT_OBJECTIVES",
    "PresetRequest",
    "StudySummary",
    "TrialDetail",
    "TrialSummary",
    "export_trials",
    "get_trial",
    "list_studies",
    "list_trials",
    "open_store",
    "pareto_front",
    "parse_objectives",
    "preset_requests",
    "study_objectives",
    "trial_fields",
    "trial_summaries",
]
