"""A tabular benchmark of a finite search space: every architecture evaluated once, then looked up.

Comparing samplers on real trainings costs hours per seed; against a table of results a trial
costs a dictionary lookup, so a sampler can be run with many seeds and budgets in seconds
(``benchmarks/search_efficiency.py``). The pieces:

* :func:`enumerate_space` lists every architecture ``space.suggest`` can return (categorical and
  integer choices only), by replaying ``suggest`` with every combination of answers;
* :class:`Table` maps an architecture hash to its stored result (loaded from a store's
  ``trial_results`` rows of one table study, or built in memory by a test);
* :func:`run_sampler` runs one Optuna study against a table; a trial's objective values are the
  table's, an infeasible architecture is pruned as the search prunes it (see
  :class:`TabularObjective`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from ..config import ArchConfig
from ..errors import ConfigError
from ..objectives import Objective
from .samplers import constraint_violations, set_constraints
from .space import SearchSpace

#: the most architectures :func:`enumerate_space` lists (a table is meant to be trained in full)
MAX_ARCHITECTURES = 5000


class NotFinite(ConfigError):
    """The space has a continuous range: no finite list of architectures to tabulate."""


class _Replay:
    """A trial-like that answers ``suggest`` from a list of choice indices and records how many
    choices each decision had, so the caller can step to the next combination. A name asked
    again (a head size shared by the stages) gets its first answer, as an Optuna trial's does."""

    def __init__(self, picks: list[int]) -> None:
        self.picks = picks
        self.sizes: list[int] = []
        self.answers: dict[str, Any] = {}

    def _choose(self, name: str, values: Sequence[Any]) -> Any:
        if name in self.answers:
            return self.answers[name]
        i = len(self.sizes)
        self.sizes.append(len(values))
        if i == len(self.picks):
            self.picks.append(0)
        self.answers[name] = values[self.picks[i]]
        return self.answers[name]

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._choose(name, list(choices))

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1,
                    log: bool = False) -> int:
        return self._choose(name, list(range(low, high + 1, step)))

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        if step is None:
            raise NotFinite(f"{name}: a continuous range has no finite list of architectures")
        n = round((high - low) / step)
        return self._choose(name, [low + k * step for k in range(n + 1)])


def enumerate_space(space: SearchSpace, num_classes: int = 10, resolution: Any = None
                    ) -> Iterator[ArchConfig | None]:
    """Every answer combination of ``space.suggest``, depth first; None for a combination the
    space refuses (a ConfigError while building), so the count matches the space's size."""
    picks: list[int] = []
    count = 0
    while True:
        replay = _Replay(picks)
        try:
            yield space.suggest(replay, num_classes=num_classes, resolution=resolution)
        except NotFinite:
            raise
        except ConfigError:
            yield None
        count += 1
        if count > MAX_ARCHITECTURES:
            raise ConfigError(f"space {space.name} has more than {MAX_ARCHITECTURES} "
                              "architectures; narrow it for a table")
        # the odometer: advance the last decision that has choices left, drop those after it
        # (they may not exist under the new answer, e.g. options of another block)
        picks = picks[:len(replay.sizes)]
        while picks and picks[-1] + 1 >= replay.sizes[len(picks) - 1]:
            picks.pop()
        if not picks:
            return
        picks[-1] += 1


@dataclass
class Entry:
    """One architecture's result: objective values by name, or the reason it is infeasible."""

    values: dict[str, float]
    infeasible: str | None = None


@dataclass
class Table:
    """Results by architecture hash; ``seconds`` is what building it cost (train + time)."""

    entries: dict[str, Entry] = field(default_factory=dict)
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def from_store(cls, url: str, study: str) -> Table:
        """The complete and infeasible ``trial_results`` rows of ``study`` (the table's rows)."""
        from sqlalchemy import select

        from .. import store
        from ..store import TrialResult, db

        table = cls()
        with db.session_scope(url) as s:
            rows = s.execute(select(TrialResult).where(
                TrialResult.study == study,
                TrialResult.state.in_((store.COMPLETE, store.INFEASIBLE)))).scalars().all()
            for r in rows:
                values = {k: float(getattr(r, k)) for k in
                          ("accuracy", "latency_ms", "flops", "params")
                          if getattr(r, k) is not None}
                table.entries[r.arch_hash] = Entry(
                    values, r.reason if r.state == store.INFEASIBLE else None)
                table.seconds += float(r.total_seconds or 0.0)
        return table


class TabularObjective:
    """An Optuna objective that looks the sampled architecture up instead of training it.

    As in a search, an architecture the space refuses, one outside the table (not built yet) and
    one over the space's limits are pruned, and pruned trials do not use the budget. With
    ``constraint_aware`` every trial also carries its constraint values (as
    :func:`edgeexplore.search.samplers.set_constraints` stores them in a search), so samplers
    that read them (TPE, GP) learn where the infeasible region is.
    """

    def __init__(self, space: SearchSpace, table: Table, objectives: Sequence[Objective],
                 num_classes: int = 10, constraint_aware: bool = False) -> None:
        self.space, self.table, self.objectives = space, table, tuple(objectives)
        self.num_classes, self.constraint_aware = num_classes, constraint_aware

    def __call__(self, trial: optuna.Trial) -> list[float]:
        try:
            cfg = self.space.suggest(trial, num_classes=self.num_classes)
        except ConfigError:
            raise optuna.TrialPruned("not a valid architecture") from None
        trial.set_user_attr("arch_hash", cfg.hash)
        entry = self.table.entries.get(cfg.hash)
        if entry is None:
            raise optuna.TrialPruned("not in the table")
        cons = self.space.constraints
        if self.constraint_aware:
            set_constraints(trial, cons, entry.values)
        if entry.infeasible or any(v > 0 for v in constraint_violations(cons, entry.values)):
            trial.set_user_attr("infeasible", True)
            raise optuna.TrialPruned(entry.infeasible or "over the space's limits")
        return [entry.values[o.name] for o in self.objectives]


def run_sampler(make: Callable[[int], optuna.samplers.BaseSampler], objective: TabularObjective,
                trials: int, seed: int) -> optuna.Study:
    """One seeded in-memory study of ``trials`` evaluated (non-pruned) trials against the table.

    Pruned trials (invalid, infeasible) do not count, as in a real search; a cap on asks stops a
    sampler that keeps proposing them.
    """
    directions = [o.optuna_direction for o in objective.objectives]
    study = optuna.create_study(directions=directions, sampler=make(seed))
    asks = 0
    while _evaluated(study) < trials and asks < trials * 20:
        study.optimize(objective, n_trials=1)
        asks += 1
    return study


def _evaluated(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
