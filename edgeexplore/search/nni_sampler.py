"""NNI's evolution tuner as an Optuna sampler: ``sampler: nni-evolution`` (optional extra ``nni``).

NNI's ``EvolutionTuner`` (naive evolution after Real et al., 2017) runs here in-process: no NNI
experiment, manager or web server. It keeps a population; a new configuration is either one of
the ``population_size`` random initial individuals or, once those are used, a copy of the better
of two random members with one parameter re-drawn (the worse of the two leaves the population);
every result joins the population. :class:`NNIEvolutionSampler` adapts that to Optuna and to our
define-by-run spaces:

* **Search space.** NNI needs the whole space up front, ours is discovered while sampling (a
  block's options are only asked when the block is chosen). The tuner is given the union of all
  parameters any trial of the study has asked so far, each mapped from its Optuna distribution:
  categorical -> ``choice`` over the choices' indices (so any value type works), int and stepped
  float -> ``randint`` over the grid's indices, float -> ``uniform``, log int/float ->
  ``loguniform`` (rounded back to the step). At the first parameter of a trial the tuner proposes
  a full configuration and every asked parameter is served from it; a parameter the tuner does
  not know yet (the first trial, a branch never taken before) is drawn at random and the tuner is
  rebuilt with it before the next trial. Parameters a trial does not ask are simply unused.
* **Duplicates.** NNI's mutation re-draws one parameter, which often gives the parent back (the
  same value drawn again, or a parameter the parent's branch does not use). A proposal that would
  repeat a finished architecture (it agrees with every parameter of a complete or pruned trial) is
  withdrawn and drawn again, up to ``MAX_REDRAWS`` times, so the budget is not spent re-training.
* **Several objectives.** NNI's tuner maximises one number. A complete trial's values are signed
  by direction (so larger is better), each min-max normalised over all complete trials of the
  study so far, and summed with ``weights`` (sampler option, default 1 for every objective). As the
  ranges move, every scored member of the population is re-scored, so comparisons stay fair.
* **Feedback.** ``after_trial`` reports a complete trial to the tuner with the parameters the
  trial really used (not necessarily the proposal: fixed/enqueued values, random fallbacks).
  Pruned (infeasible, stopped early) and failed trials go through NNI's own failure path
  (``trial_end(success=False)``): the proposal is dropped and a random individual takes its place.
* **Resume and other workers.** On first use, and whenever the space grows, the tuner is rebuilt
  from the study's storage: every complete trial is replayed in order (the tuner proposes a slot,
  which is filled with the trial's parameters and result). NNI's ``import_data`` does nothing in
  3.0, hence the replay. Complete trials of other workers are fed the same way before each
  proposal, so several processes on one study each evolve from everyone's results.
* **Reproducibility.** NNI draws from its own ``numpy`` ``RandomState`` (which it seeds from the
  OS; here it is re-seeded from ``seed``) and from Python's global ``random`` module, whose state
  is swapped for a private one around every tuner call. Same seed and same history, same
  proposals.

Works with nni 3.0 (the last release); the tuner's attributes it relies on (``population``,
``running_trials``, ``random_state``, ``space``, ``searchspace_json``) are checked at start. One
sampler serves one process; calls are serialised with a lock.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

#: initial random individuals, and the population size NNI keeps (NNI's own default is 32; small
#: budgets of tens of trials need evolution to start sooner)
DEFAULT_POPULATION = 8
#: proposals drawn again at most when they repeat a finished architecture
MAX_REDRAWS = 32
OPTIONS = ("population_size", "weights")
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _load_nni() -> tuple[type, type, Callable[..., Any]]:
    """NNI's tuner class, its individual class and ``json2parameter``; ImportError if unusable."""
    try:
        from nni.algorithms.hpo.evolution_tuner import EvolutionTuner, Individual
        from nni.utils import json2parameter
    except ImportError:
        raise
    except Exception as e:  # noqa: BLE001 - a broken install raises anything; say what it was
        raise ImportError(f"nni does not import here: {type(e).__name__}: {e}") from None
    # "trial (N) end" at INFO for every failed trial would go to stdout through NNI's handler
    logging.getLogger(EvolutionTuner.__module__).setLevel(logging.WARNING)
    # smoke-test the in-process API and the attributes this adapter uses
    try:
        tuner = EvolutionTuner(optimize_mode="maximize", population_size=2)
        tuner.update_search_space({"x": {"_type": "choice", "_value": [0, 1]}})
        params = tuner.generate_parameters(0)
        tuner.receive_trial_result(0, params, 1.0)
        for attr in ("population", "running_trials", "random_state", "space", "searchspace_json"):
            getattr(tuner, attr)
        json2parameter(tuner.searchspace_json, dict.fromkeys(tuner.space, True),
                       tuner.random_state)
    except Exception as e:  # noqa: BLE001
        raise ImportError(f"nni's EvolutionTuner does not work in-process here "
                          f"({type(e).__name__}: {e}); this adapter was written for nni 3.0"
                          ) from None
    return EvolutionTuner, Individual, json2parameter


# -- Optuna distributions <-> NNI search-space entries ------------------------------------------

def _grid_size(low: float, high: float, step: float) -> int:
    return math.floor((high - low) / step + 1e-9) + 1


def _nni_entry(d: BaseDistribution) -> dict[str, Any]:
    if isinstance(d, CategoricalDistribution):
        return {"_type": "choice", "_value": list(range(len(d.choices)))}
    if isinstance(d, IntDistribution | FloatDistribution):
        if d.log:
            return {"_type": "loguniform", "_value": [float(d.low), float(d.high)]}
        if isinstance(d, IntDistribution) or d.step is not None:
            return {"_type": "randint", "_value": [0, _grid_size(d.low, d.high, d.step or 1)]}
        return {"_type": "uniform", "_value": [float(d.low), float(d.high)]}
    raise TypeError(f"nni-evolution cannot sample a {type(d).__name__}")


def _decode(d: BaseDistribution, v: Any) -> Any:
    """NNI's value (index, grid index or number) -> the Optuna value."""
    if isinstance(d, CategoricalDistribution):
        return d.choices[int(v)]
    if isinstance(d, IntDistribution):
        if d.log:
            k = round((float(v) - d.low) / d.step)
            return int(min(max(d.low + k * d.step, d.low), d.high))
        return int(min(d.low + int(v) * d.step, d.high))
    if isinstance(d, FloatDistribution):
        if d.step is not None:
            return float(min(d.low + int(v) * d.step, d.high))
        return float(min(max(float(v), d.low), d.high))
    raise TypeError(type(d).__name__)  # pragma: no cover - _nni_entry refused it already


def _encode(d: BaseDistribution, v: Any) -> Any:
    """The Optuna value -> NNI's config entry; None when it is not in the distribution."""
    if not _contains(d, v):
        return None
    if isinstance(d, CategoricalDistribution):
        i = next(i for i, c in enumerate(d.choices) if c == v and type(c) is type(v))
        return {"_index": i, "_value": i}
    if isinstance(d, IntDistribution | FloatDistribution):
        if d.log:
            return float(v)
        if isinstance(d, IntDistribution) or d.step is not None:
            return round((v - d.low) / (d.step or 1))
        return float(v)
    return None  # pragma: no cover


def _contains(d: BaseDistribution, v: Any) -> bool:
    if isinstance(d, CategoricalDistribution):
        return any(c == v and type(c) is type(v) for c in d.choices)
    if isinstance(v, bool) or not isinstance(v, int | float) or not d.low <= v <= d.high:
        return False
    if isinstance(d, IntDistribution):
        return float(v).is_integer() and (int(v) - d.low) % d.step == 0
    if isinstance(d, FloatDistribution) and d.step is not None:
        k = (v - d.low) / d.step
        return abs(k - round(k)) < 1e-8
    return True


def _covers(proposal: dict[str, Any], params: dict[str, Any]) -> bool:
    """Would a trial served ``proposal`` ask exactly ``params`` again (same define-by-run path)?"""
    return bool(params) and all(k in proposal and proposal[k] == v and type(proposal[k]) is type(v)
                                for k, v in params.items())


# -- the sampler -----------------------------------------------------------------------------------

class NNIEvolutionSampler(BaseSampler):
    """Optuna sampler driven by NNI's in-process ``EvolutionTuner`` (see the module docstring).

    ``population_size`` (>= 2): NNI's population and number of random initial configurations.
    ``weights``: one non-negative weight per objective for the scalarisation (default all 1).
    ``seed``: makes the proposals reproducible. Raises ImportError when nni is missing or broken.
    """

    def __init__(self, *, population_size: int = DEFAULT_POPULATION,
                 weights: Sequence[float] | None = None, seed: int | None = None) -> None:
        if isinstance(population_size, bool) or not isinstance(population_size, int) \
                or population_size < 2:
            raise ValueError(f"population_size must be an integer >= 2, not {population_size!r}")
        if weights is not None:
            if isinstance(weights, str | bytes) or not isinstance(weights, Sequence):
                raise ValueError(f"weights must be a list of numbers, not {weights!r}")
            if not all(isinstance(w, int | float) and not isinstance(w, bool)
                       and math.isfinite(w) and w >= 0 for w in weights):
                raise ValueError(f"weights must be non-negative numbers, not {list(weights)!r}")
            if not any(w > 0 for w in weights):
                raise ValueError("weights: at least one must be positive")
            weights = [float(w) for w in weights]
        self._Tuner, self._Individual, self._json2parameter = _load_nni()
        self._population = population_size
        self._weights = weights
        self._rng = np.random.RandomState(seed)
        self._fallback = RandomSampler(seed=seed)
        self._lock = threading.RLock()
        self._tuner: Any = None
        self._dists: dict[str, BaseDistribution] = {}  # the tuner's space, as Optuna sees it
        self._py_state: Any = None  # the tuner's private state of Python's ``random``
        self._next_id = 0
        self._pending: dict[int, int] = {}  # own trial number -> NNI parameter id
        self._fed: set[int] = set()  # trial numbers whose end the tuner has been told
        self._proposals: dict[int, dict[str, Any]] = {}  # trial number -> proposed values
        self._stale = False  # a trial asked a parameter outside the tuner's space
        self._lo: list[float] = []  # per objective: range of the signed values seen
        self._hi: list[float] = []

    # -- Optuna's interface ------------------------------------------------------------------------
    def infer_relative_search_space(self, study: Study, trial: FrozenTrial
                                    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        with self._lock:
            if trial.number not in self._proposals:
                self._proposals[trial.number] = self._propose(study, trial)
            proposal = self._proposals[trial.number]
            if self._dists.get(param_name) != param_distribution:
                self._stale = True  # rebuild the tuner with it before the next trial
            value = proposal.get(param_name)
            if param_name in proposal and _contains(param_distribution, value):
                return value
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        with self._lock:
            self._proposals.pop(trial.number, None)
            if trial.number not in self._pending or self._tuner is None:
                return  # nothing proposed for it (all values fixed): imported by the next sync
            if state == TrialState.COMPLETE and values is not None \
                    and all(math.isfinite(v) for v in values):
                signed = self._signed(values, study.directions)
                self._observe(signed)
                self._feed(trial.number, trial.params, signed)
                self._rescore()
            else:
                self._end(trial.number)

    def reseed_rng(self) -> None:
        with self._lock:
            self._rng = np.random.RandomState()
            self._fallback.reseed_rng()
            if self._tuner is not None:
                self._tuner.random_state = np.random.RandomState(self._rng.randint(2**31))
                self._py_state = random.Random(int(self._rng.randint(2**31))).getstate()

    # -- proposing -----------------------------------------------------------------------------
    def _propose(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
        union: dict[str, BaseDistribution] = {}
        for t in trials:
            union.update(t.distributions)
        union = dict(sorted(union.items()))
        if self._tuner is None or self._stale or union != self._dists:
            self._rebuild(union, trials, study.directions)
        else:
            self._sync(trials, study.directions)
        if self._tuner is None:
            return {}  # nothing known yet: the first trial is random
        seen = [t.params for t in trials if t.state in _FINISHED]
        tuner = self._tuner
        for attempt in range(MAX_REDRAWS):
            pid = self._new_id()
            before = list(tuner.population)
            fresh = next((i for i, ind in enumerate(before) if ind.result is None), None)
            with self._own_random():
                if not tuner.population:
                    tuner.population.append(self._random_individual())
                config = tuner.generate_parameters(pid)
            proposal = {k: _decode(self._dists[k], v) for k, v in config.items()}
            if attempt == MAX_REDRAWS - 1 or not any(_covers(proposal, p) for p in seen):
                break
            # withdraw the repeat: undo the tournament; an initial individual is replaced
            tuner.running_trials.pop(pid)
            tuner.population[:] = before
            if fresh is not None:
                tuner.population[fresh] = self._random_individual()
        self._pending[trial.number] = pid
        return proposal

    def _rebuild(self, union: dict[str, BaseDistribution], trials: list[FrozenTrial],
                 directions: Sequence[StudyDirection]) -> None:
        """A fresh tuner over ``union``, seeded, with every complete trial replayed into it."""
        self._dists, self._stale = union, False
        self._pending.clear()
        self._fed.clear()
        if not union:
            self._tuner = None
            return
        tuner = self._Tuner(optimize_mode="maximize", population_size=self._population)
        tuner.update_search_space({k: _nni_entry(d) for k, d in union.items()})
        # NNI seeds its RandomState from the OS; re-seed and redraw the initial population
        tuner.random_state = np.random.RandomState(self._rng.randint(2**31))
        self._py_state = random.Random(int(self._rng.randint(2**31))).getstate()
        self._tuner = tuner
        tuner.population = [self._random_individual() for _ in range(self._population)]
        self._lo, self._hi = [], []
        for t in trials:
            if t.state == TrialState.COMPLETE and t.values is not None:
                self._observe(self._signed(t.values, directions))
        self._sync(trials, directions)

    def _sync(self, trials: list[FrozenTrial], directions: Sequence[StudyDirection]) -> None:
        """Feed complete trials the tuner has not seen (resume, other workers, fixed trials)."""
        fed = False
        for t in trials:
            if t.number in self._fed:
                continue
            if t.state == TrialState.COMPLETE and t.values is not None \
                    and all(math.isfinite(v) for v in t.values):
                signed = self._signed(t.values, directions)
                self._observe(signed)
                self._feed(t.number, t.params, signed)
                fed = True
            elif t.state.is_finished() and t.number in self._pending:
                self._end(t.number)  # ours, ended without after_trial (e.g. marked failed)
        if fed:
            self._rescore()

    # -- feeding the tuner -----------------------------------------------------------------------
    def _feed(self, number: int, params: dict[str, Any], signed: list[float]) -> None:
        """Tell the tuner a result for the parameters actually used."""
        tuner = self._tuner
        pid = self._pending.pop(number, None)
        with self._own_random():
            if pid is None:  # not proposed by this tuner: take a slot as if it had been
                pid = self._new_id()
                if not tuner.population:
                    tuner.population.append(self._random_individual())
                tuner.generate_parameters(pid)
            tuner.running_trials[pid].config = self._config_of(params)
            tuner.receive_trial_result(pid, params, self._score(signed))
        tuner.population[-1].info = signed  # raw signed values, for re-scoring
        self._fed.add(number)

    def _end(self, number: int) -> None:
        pid = self._pending.pop(number)
        with self._own_random():
            self._tuner.trial_end(pid, success=False)  # NNI adds a random individual instead
        self._fed.add(number)

    def _config_of(self, params: dict[str, Any]) -> dict[str, Any]:
        """NNI's internal config for ``params``; parameters it lacks keep a random value."""
        config = self._random_individual().config
        for k, d in self._dists.items():
            if k in params:
                enc = _encode(d, params[k])
                if enc is not None:
                    config[k] = enc
        return config

    def _random_individual(self) -> Any:
        t = self._tuner
        return self._Individual(config=self._json2parameter(
            t.searchspace_json, dict.fromkeys(t.space, True), t.random_state))

    # -- scalarisation ---------------------------------------------------------------------------
    def _signed(self, values: Sequence[float], directions: Sequence[StudyDirection]
                ) -> list[float]:
        if self._weights is not None and len(self._weights) != len(directions):
            raise ValueError(f"nni-evolution: {len(self._weights)} weights for "
                             f"{len(directions)} objectives")
        return [float(v) if d == StudyDirection.MAXIMIZE else -float(v)
                for v, d in zip(values, directions, strict=True)]

    def _observe(self, signed: list[float]) -> None:
        if not self._lo:
            self._lo, self._hi = list(signed), list(signed)
            return
        self._lo = [min(a, b) for a, b in zip(self._lo, signed, strict=True)]
        self._hi = [max(a, b) for a, b in zip(self._hi, signed, strict=True)]

    def _score(self, signed: list[float]) -> float:
        weights = self._weights or [1.0] * len(signed)
        return sum(w * ((s - lo) / (hi - lo) if hi > lo else 0.0)
                   for w, s, lo, hi in zip(weights, signed, self._lo, self._hi, strict=True))

    def _rescore(self) -> None:
        for ind in self._tuner.population:
            if isinstance(ind.info, list):
                ind.result = self._score(ind.info)

    # -- helpers ---------------------------------------------------------------------------------
    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    @contextmanager
    def _own_random(self) -> Iterator[None]:
        """Run NNI (which uses the global ``random`` module) on this sampler's own state."""
        outer = random.getstate()
        random.setstate(self._py_state)
        try:
            yield
        finally:
            self._py_state = random.getstate()
            random.setstate(outer)


__all__ = ["DEFAULT_POPULATION", "OPTIONS", "NNIEvolutionSampler"]
