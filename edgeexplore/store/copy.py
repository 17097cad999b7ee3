"""Copy one study, Optuna's tables and ours, from one store to another (SQLite <-> PostgreSQL).

``optuna.copy_study`` moves Optuna's part: the study, its trials, parameters and attributes, under
new ids. Our part follows it: the study's ``trial_results`` rows (their Optuna study/trial ids
remapped to the new ones through the per-study trial number, which Optuna preserves) with their
``trial_latency`` rows, the architectures they name, their environments (matched by fingerprint,
so one row per environment at the destination) and the cached latency measurements of those
architectures.

The trials' ``edgeexplore_id`` user attribute (our row id, shown by optuna-dashboard) is set to
the new rows' ids. Our rows are written in one transaction. Optuna's copy is not transactional, so whenever
anything fails after the destination study was created, that study is deleted again: a failed
copy leaves the destination as it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import optuna
from sqlalchemy import Connection, Table, column, func, select, table

from .. import store
from ..errors import EdgeExploreError
from . import db
from .trial_latency import TrialLatency

#: Optuna's user attributes, where each trial names its trial_results row as "edgeexplore_id"
_USER_ATTRS = table("trial_user_attributes", column("trial_id"), column("key"),
                    column("value_json"))
#: the latency cache's identity of a measurement (it keeps one row per such key)
_LATENCY_KEY = ("arch_hash", "input_shape", "batch", "backend", "settings", "device_fingerprint")


@dataclass
class CopyReport:
    """What a copy wrote at the destination."""

    study: str
    trials: int  # Optuna trials
    trial_results: int
    architectures: int  # new at the destination (those already there are shared)
    environments: int  # new at the destination
    latency_measurements: int  # new at the destination


def _study_id(storage: optuna.storages.RDBStorage, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None


def _numbers(storage: optuna.storages.RDBStorage, study_id: int) -> dict[int, int]:
    """Optuna trial id -> the trial's number within its study."""
    return {t._trial_id: t.number for t in storage.get_all_trials(study_id, deepcopy=False)}


def copy_study(name: str, from_url: str, to_url: str) -> CopyReport:
    """Copy study ``name`` from ``from_url`` to ``to_url``; refuses if the destination has it."""
    src_url, dst_url = db.normalise_url(from_url), db.normalise_url(to_url)
    if src_url == dst_url:
        raise EdgeExploreError(f"--from and --to are the same store ({db.shown(src_url)})")
    # the source is read: it must be a store already (a typo must not create an empty one)
    src_engine = db.open_store(src_url, create=False).engine
    src = db.optuna_rdb(src_url, create=False)
    src_study = _study_id(src, name)
    if src_study is None:  # said before the destination is created
        raise EdgeExploreError(f"{db.shown(src_url)} holds no study named {name!r} "
                               "(see edgeexplore studies)")
    dst_engine = db.open_store(dst_url).engine
    dst = db.optuna_rdb(dst_url)
    results = store.TrialResult.__table__
    with dst_engine.connect() as conn:
        ours_there = conn.scalar(select(func.count()).where(results.c.study == name))
    if _study_id(dst, name) is not None or ours_there:
        raise EdgeExploreError(f"{db.shown(dst_url)} already has a study named {name!r}: "
                               "nothing copied")
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    try:
        optuna.copy_study(from_study_name=name, from_storage=src, to_storage=dst)
        dst_study = dst.get_study_id_from_name(name)
        by_number = {n: tid for tid, n in _numbers(dst, dst_study).items()}
        trial_ids = {tid: by_number[n] for tid, n in _numbers(src, src_study).items()}
        with src_engine.connect() as src_conn, dst_engine.begin() as dst_conn:
            counts = _copy_ours(name, src_conn, dst_conn, dst_study, trial_ids)
    except optuna.exceptions.DuplicatedStudyError:  # created meanwhile by someone else: keep it
        raise EdgeExploreError(f"{db.shown(dst_url)} already has a study named {name!r}: "
                               "nothing copied") from None
    except BaseException:
        if _study_id(dst, name) is not None:
            optuna.delete_study(study_name=name, storage=dst)
        raise
    finally:
        optuna.logging.set_verbosity(verbosity)
    return CopyReport(name, len(trial_ids), *counts)


def _copy_ours(name: str, src: Connection, dst: Connection, dst_study: int,
               trial_ids: dict[int, int]) -> tuple[int, int, int, int]:
    results = store.TrialResult.__table__
    rows = src.execute(select(results).where(results.c.study == name)
                       .order_by(results.c.id)).mappings().all()
    hashes = sorted({r["arch_hash"] for r in rows if r["arch_hash"]})
    new_archs = _copy_architectures(src, dst, hashes)
    env_ids, new_envs = _copy_environments(src, dst, {r["environment_id"] for r in rows
                                                      if r["environment_id"] is not None})
    new_ids: dict[int, int] = {}
    for r in rows:  # in id order, so a reused_from inside the study is already mapped
        row = {k: v for k, v in r.items() if k != "id"}
        row["optuna_study_id"] = dst_study if r["optuna_study_id"] is not None else None
        if r["optuna_trial_id"] is not None:
            if r["optuna_trial_id"] not in trial_ids:
                raise EdgeExploreError(
                    f"trial result {r['id']} of {name!r} names Optuna trial "
                    f"{r['optuna_trial_id']}, which is not in the study: nothing copied")
            row["optuna_trial_id"] = trial_ids[r["optuna_trial_id"]]
        row["environment_id"] = env_ids.get(r["environment_id"])
        # a result reused from another study's row keeps its numbers; the link cannot follow
        row["reused_from"] = new_ids.get(r["reused_from"])
        new_ids[r["id"]] = dst.execute(results.insert().values(row)).inserted_primary_key[0]
        if row["optuna_trial_id"] is not None:  # Optuna's copy still names the old row
            dst.execute(_USER_ATTRS.update().where(
                _USER_ATTRS.c.trial_id == row["optuna_trial_id"],
                _USER_ATTRS.c.key == "edgeexplore_id",
            ).values(value_json=json.dumps(new_ids[r["id"]])))
    _copy_sources(src, dst, new_ids)
    new_latency = _copy_latency(src, dst, hashes)
    return len(rows), new_archs, new_envs, new_latency


def _copy_sources(src: Connection, dst: Connection, new_ids: dict[int, int]) -> None:
    """Each copied row's ``trial_latency`` (measured or predicted), under its new id."""
    sources = TrialLatency.__table__
    for row in src.execute(select(sources).where(sources.c.trial_id.in_(list(new_ids))))\
            .mappings():
        dst.execute(sources.insert().values({**row, "trial_id": new_ids[row["trial_id"]]}))


def _copy_architectures(src: Connection, dst: Connection, hashes: list[str]) -> int:
    archs = store.Architecture.__table__
    there = set(dst.scalars(select(archs.c.hash).where(archs.c.hash.in_(hashes))))
    missing = [h for h in hashes if h not in there]
    for row in src.execute(select(archs).where(archs.c.hash.in_(missing))).mappings():
        dst.execute(archs.insert().values(dict(row)))
    return len(missing)


def _copy_environments(src: Connection, dst: Connection, ids: set[int]
                       ) -> tuple[dict[int, int], int]:
    """Source environment id -> destination id, adding the environments it lacks."""
    envs = store.Environment.__table__
    mapping: dict[int, int] = {}
    added = 0
    for row in src.execute(select(envs).where(envs.c.id.in_(ids))).mappings():
        there = dst.scalar(select(envs.c.id).where(envs.c.fingerprint == row["fingerprint"]))
        if there is None:
            values = {k: v for k, v in row.items() if k != "id"}
            there = dst.execute(envs.insert().values(values)).inserted_primary_key[0]
            added += 1
        mapping[row["id"]] = there
    return mapping, added


def _latency_table() -> Table:
    # looked up by name: the cache's table module may move, its table name stays
    return db.Base.metadata.tables["latency_measurements"]


def _copy_latency(src: Connection, dst: Connection, hashes: list[str]) -> int:
    """The cached measurements of these architectures that the destination lacks (by cache key;
    where both have one, the destination keeps its own, as its cache would)."""
    table = _latency_table()
    key_cols = [table.c[k] for k in _LATENCY_KEY]
    there = {tuple(r) for r in dst.execute(select(*key_cols).where(table.c.arch_hash.in_(hashes)))}
    added = 0
    for row in src.execute(select(table).where(table.c.arch_hash.in_(hashes))
                           .order_by(table.c.id)).mappings():
        key = tuple(row[k] for k in _LATENCY_KEY)
        if key in there:
            continue
        dst.execute(table.insert().values({k: v for k, v in row.items() if k != "id"}))
        there.add(key)
        added += 1
    return added
