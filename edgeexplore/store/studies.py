"""Deleting and renaming a search study: our ``trial_results`` rows and Optuna's record together.

* **delete**: Optuna's study first (``optuna.delete_study`` removes its trials, values and
  attributes), then our rows in one transaction. In that order a failure between the two leaves
  only our rows, and running the delete again finishes it. The architectures stay (other studies
  and ablations share them), and so do preset trainings (reusable by any study with the same
  recipe, data and seed).
* **rename**: Optuna has no rename, and ``optuna.copy_study`` gives the copied trials new ids,
  which would break every ``trial_results.optuna_trial_id``. The study's name is one column of
  Optuna's ``studies`` table, so it is updated there, in the same transaction as our
  ``trial_results.study`` (and ``preset_trainings.study``): either both names change or neither.

Ablations keep their runs under ``ablation:NAME`` studies; those are refused here (an ablation
is not a search study, and its variants point at the rows).
"""

from __future__ import annotations

import optuna
from sqlalchemy import delete, func, inspect, select, text, update

from ..errors import EdgeExploreError
from . import db
from .ablations import STUDY_PREFIX
from .preset_trainings import PresetTraining
from .schema import TrialResult
from .trial_latency import TrialLatency

#: Optuna's table of studies (its RDB schema, stable since Optuna 1.x)
_OPTUNA_STUDIES = "studies"


def _optuna_names(session) -> set[str]:
    if not inspect(session.get_bind()).has_table(_OPTUNA_STUDIES):
        return set()
    return set(session.scalars(text(f"SELECT study_name FROM {_OPTUNA_STUDIES}")))


def _our_count(session, name: str) -> int:
    return session.scalar(select(func.count()).select_from(TrialResult)
                          .where(TrialResult.study == name)) or 0


def _check_search_study(name: str) -> None:
    if name.startswith(STUDY_PREFIX):
        raise EdgeExploreError(f"{name!r} holds an ablation's runs, not a search study; "
                               "ablations are not deleted or renamed here")


def study_size(url: str | None, name: str) -> int:
    """How many trial rows the study has; an unknown study is an error naming the known ones."""
    _check_search_study(name)
    with db.session_scope(url) as s:
        n, optuna_names = _our_count(s, name), _optuna_names(s)
        if n == 0 and name not in optuna_names:
            ours = set(s.scalars(select(TrialResult.study).distinct()))
            known = sorted(n for n in ours | optuna_names if not n.startswith(STUDY_PREFIX))
            raise EdgeExploreError(f"no study named {name!r} in the store (studies: "
                                   f"{', '.join(known) or 'none'})")
    return n


def delete_study(url: str | None, name: str) -> int:
    """Delete the study from both stores; returns how many of our trial rows went."""
    study_size(url, name)
    url = db.normalise_url(url)
    with db.session_scope(url) as s:
        in_optuna = name in _optuna_names(s)
    # else only our rows (a search stopped before Optuna's study, or a half-done delete): an
    # Optuna storage opened anyway would add Optuna's tables to a store that has none
    if in_optuna:
        try:
            optuna.delete_study(study_name=name, storage=db.optuna_rdb(url, create=False))
        except KeyError:
            pass  # deleted meanwhile by another delete
    with db.session_scope(url) as s:
        # SQLite enforces no foreign keys here, so the cascade is spelled out
        s.execute(delete(TrialLatency).where(TrialLatency.trial_id.in_(
            select(TrialResult.id).where(TrialResult.study == name))))
        return s.execute(delete(TrialResult).where(TrialResult.study == name)).rowcount


def rename_study(url: str | None, old: str, new: str) -> int:
    """Rename the study in both stores in one transaction; returns how many trial rows moved."""
    from ..study_summary import check_study_name

    study_size(url, old)
    _check_search_study(new)
    check_study_name(new)  # the rule `search --name` applies: 1-200 printable characters
    with db.session_scope(url) as s:
        if _our_count(s, new) or new in _optuna_names(s):
            raise EdgeExploreError(f"a study named {new!r} already exists; delete it first or "
                                   "choose another name")
        if old in _optuna_names(s):
            s.execute(text(f"UPDATE {_OPTUNA_STUDIES} SET study_name = :new "
                           "WHERE study_name = :old"), {"new": new, "old": old})
        s.execute(update(PresetTraining).where(PresetTraining.study == old).values(study=new))
        return s.execute(update(TrialResult).where(TrialResult.study == old)
                         .values(study=new)).rowcount
