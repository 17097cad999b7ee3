"""What a study is, read from the store: its trials by state, its objectives and best values.

One type for every place that reports on a study: ``edgeexplore studies`` (through
:func:`edgeexplore.analysis.query.list_studies`) and the summary a search prints when it ends.
It sits above the store and below both the search and the analysis, so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, func, inspect, select
from sqlalchemy.exc import DatabaseError, OperationalError

from .errors import ConfigError
from .objectives import DEFAULT_OBJECTIVES, Objective, make_objective, normalise_name
from .store import COMPLETE, TrialResult

T = TrialResult
#: the longest study name accepted (names go in table cells, file names and shell commands)
MAX_NAME = 200


@dataclass
class StudySummary:
    """One study: its trials by state, its objectives and the best value of each."""

    name: str
    trials: int = 0
    states: dict[str, int] = field(default_factory=dict)
    objectives: list[str] = field(default_factory=list)  # "accuracy:max", ...
    best: dict[str, float | None] = field(default_factory=dict)
    first_trial: str | None = None
    last_trial: str | None = None


def check_study_name(name: str) -> str:
    """``name`` if it can name a study: 1 to MAX_NAME printable characters, not all blank."""
    if not name.strip() or len(name) > MAX_NAME or not name.isprintable():
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise ConfigError(f"a study name must be 1 to {MAX_NAME} printable characters, not "
                          f"blank and without control characters ({len(name)} given: {shown!r})")
    return name


def optuna_study_attrs(engine: Engine) -> dict[str, dict[str, Any]]:
    """Study name → {"objectives": ["metric:dir", ...], "recipe": {...}} from Optuna's tables."""
    with engine.connect() as conn:
        if "studies" not in inspect(conn).get_table_names():
            return {}
    import optuna

    try:
        storage = optuna.storages.RDBStorage(
            engine.url.render_as_string(hide_password=False), skip_table_creation=True,
            skip_compatibility_check=True,
        )
        studies = storage.get_all_studies()
    except (OperationalError, DatabaseError, RuntimeError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for s in studies:
        attrs: dict[str, Any] = {"recipe": s.user_attrs.get("recipe")}
        names = s.system_attrs.get("study:metric_names")
        dirs = ["max" if d == optuna.study.StudyDirection.MAXIMIZE else "min" for d in s.directions]
        if names and len(names) == len(dirs):
            attrs["objectives"] = [f"{normalise_name(str(n))}:{d}" for n, d in zip(names, dirs)]
        elif isinstance(s.user_attrs.get("objectives"), list):
            attrs["objectives"] = [str(o) for o in s.user_attrs["objectives"]]
        out[s.study_name] = attrs
    return out


def stored_objectives(texts: Sequence[str]) -> list[Objective]:
    """Objectives as a study recorded them, in any spelling this or an older version wrote;
    ones that are not stored columns (nothing to rank) are left out."""
    columns = set(T.__table__.c.keys())
    out = []
    for text in texts:
        name, _, direction = str(text).partition(":")
        try:
            out.append(make_objective(name, direction or None, columns))
        except ConfigError:
            continue
    return out


def summarise_studies(engine: Engine, names: Sequence[str] | None = None) -> list[StudySummary]:
    """Summaries of the named studies (default: every study Optuna or our table knows), by name."""
    query = select(T.study, T.state, func.count(), func.min(T.started_at), func.max(T.started_at))
    if names is not None:
        query = query.where(T.study.in_(list(names)))
    with engine.connect() as conn:
        rows = conn.execute(query.group_by(T.study, T.state)).all()
    attrs = optuna_study_attrs(engine)
    by_study: dict[str, StudySummary] = {}
    for name, a in attrs.items():  # studies Optuna knows that have no results yet show with 0
        if names is None or name in names:
            by_study[name] = StudySummary(name, objectives=a.get("objectives") or [])
    for name, state, count, first, last in rows:
        s = by_study.setdefault(name, StudySummary(name))
        s.states[state] = count
        s.trials += count
        s.first_trial = min(filter(None, [s.first_trial, iso_time(first)]), default=None)
        s.last_trial = max(filter(None, [s.last_trial, iso_time(last)]), default=None)
    with engine.connect() as conn:
        for s in by_study.values():
            objs = stored_objectives(s.objectives or DEFAULT_OBJECTIVES.split(","))
            s.objectives = [str(o) for o in objs]  # one spelling, whatever wrote the study
            aggs = [(func.max if o.direction == "max" else func.min)(getattr(T, o.name))
                    for o in objs]
            vals = conn.execute(
                select(*aggs).where(T.study == s.name, T.state == COMPLETE)
            ).one() if aggs else ()
            s.best = {o.name: v for o, v in zip(objs, vals)}
    return sorted(by_study.values(), key=lambda s: s.name)


def iso_time(value: Any) -> str | None:
    """A stored timestamp as 'YYYY-MM-DD HH:MM:SS' (SQLite may hand back text)."""
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)[:19]


__all__ = ["MAX_NAME", "StudySummary", "check_study_name", "iso_time", "optuna_study_attrs", "stored_objectives", "summarise_studies"]
