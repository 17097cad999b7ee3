"""The search loop: sample → validate → cost → constraints → latency → proxy training → store.

One Optuna study per name, in the same SQLite file as our tables (docs/store.md). Each
trial is one :func:`edgeexplore.evaluation.evaluate` (see :mod:`edgeexplore.search.trial`):

1. the space suggests an :class:`ArchConfig` (invalid values → ``infeasible``, never trained);
   one the study already found infeasible is a repeat, told to Optuna from the stored row without
   a row of its own, and the next sample is drawn (:mod:`edgeexplore.search.repeats`);
2. params/FLOPs are counted and the space's hard limits checked (``infeasible`` with the reason);
3. latency is measured through :func:`edgeexplore.latency.measure_arch` (cached per architecture);
4. the proxy training runs, unless this architecture was already trained with the same recipe,
   data and seed, whose result is then reused (``reused_from``);
5. one transaction writes the architecture, the trial result and the environment, then Optuna is
   told the objective values.

Infeasible trials are told to Optuna as PRUNED (they have no accuracy to report; NSGA-II and TPE
build their populations from COMPLETE trials only, so an infeasible point never becomes a
parent) and do not count against a trial-count budget, so ``--budget 4`` means four architectures
trained. Trials stopped early as hopeless are PRUNED as well, diverged and failed ones FAIL.

A crashed worker's trial is recognised by any worker of the study before it reserves its next
trial, or on the next start (its process is gone, or its heartbeat stopped), and marked failed in
both stores, so nothing is left ``running``; its architecture is queued again up to ``retries``
times.

Budgets: ``--budget`` counts the trials this command runs, shared by its own workers;
``--max-trials`` caps the study as a whole, whoever runs its trials (see :func:`_reserve`).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import re
import shlex
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import optuna
from sqlalchemy import and_, delete, event, func, not_, select, update
from sqlalchemy.exc import DatabaseError, OperationalError

from .. import interrupts, store
from ..config import PRESETS, ArchConfig
from ..errors import ConfigError, EdgeExploreError
from ..evaluation import (
    INTERRUPTED,
    LatencySpec,
    Outcome,
    TrainingSpec,
    failure_reason,
    new_trial_row,
)
from ..objectives import Objective
from ..store import TrialResult, db, liveness
from ..study_summary import StudySummary, check_study_name, summarise_studies
from ..units import duration
from . import devices as devs
from .recipe import StudyRecipe
from .repeats import Repeat, study_lock
from .samplers import make_sampler

#: user attribute of an Optuna trial: which attempt at its architecture it is (1 when absent)
ATTEMPT_ATTR = "edgeexplore_attempt"
#: consecutive unexpected trial failures after which the search stops (a bug, not bad luck)
MAX_CONSECUTIVE_FAILURES = 3
#: infeasible samples allowed per requested trial before giving up on an over-constrained space
MAX_INFEASIBLE_PER_TRIAL = 50


class StudyInterrupted(EdgeExploreError):
    """Ctrl-C: the current trial was marked failed, everything finished is stored."""


# -- budget ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """More trials to run (``trials``) and/or a wall-clock limit (``seconds``)."""

    trials: int | None = None
    seconds: float | None = None

    def __str__(self) -> str:
        parts = []
        if self.trials is not None:
            parts.append(f"{self.trials} trials")
        if self.seconds is not None:
            parts.append(f"{duration(self.seconds)} wall-clock")
        return " / ".join(parts) or "unlimited"


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|min|s|sec)")


def parse_budget(text: str | int) -> Budget:
    """``20`` → 20 more trials; ``45m``, ``2h``, ``90s``, ``1h30m`` → a wall-clock limit."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = str(text)
    else:
        value = str(text).strip().lower()
    if value.isdigit():
        try:
            n = int(value)
        except ValueError:  # past Python's 4300 digits, or a digit int() does not read ("²")
            raise ConfigError(f"budget {text!r} is neither a trial count (20) nor a duration "
                              "(45m, 2h, 90s)") from None
        if n < 1:
            raise ConfigError(f"budget {text!r}: give at least 1 trial")
        return Budget(trials=n)
    pos, total = 0, 0.0
    for m in _DURATION.finditer(value):
        if m.start() != pos and value[pos:m.start()].strip():
            break
        unit = m.group(2)
        total += float(m.group(1)) * (3600 if unit == "h" else 60 if unit.startswith("m") else 1)
        pos = m.end()
    if pos == 0 or value[pos:].strip():
        raise ConfigError(f"budget {text!r} is neither a trial count (20) nor a duration "
                          "(45m, 2h, 90s)")
    if total <= 0:
        raise ConfigError(f"budget {text!r}: the duration must be positive")
    return Budget(seconds=total)


# -- summary of one run ------------------------------------------------------------------------

@dataclass
class SearchRun:
    """What one ``run_study`` call did (``ran``, ``seconds``) and the study it left (``study``)."""

    study: StudySummary
    storage: str
    recipe: StudyRecipe
    ran: list[Outcome]
    seconds: float
    interrupted: bool = False


# -- storage -------------------------------------------------------------------------------------

@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Hide Optuna's "experimental" notices and its hint that heartbeats are meant for
    ``Study.optimize``: we drive ask/tell and send the heartbeats ourselves (see _heartbeat)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        yield


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on the same file, with our busy timeout and heartbeats on."""
    try:
        with _quiet_optuna():
            ostorage = db.optuna_rdb(url, heartbeat_interval=max(1, round(liveness.heartbeat_s())),
                                     grace_period=max(1, round(liveness.grace_s())))
    except (DatabaseError, OperationalError) as e:
        raise EdgeExploreError(f"cannot open the store {db.shown(url)}: {db.error_reason(e)}") from None
    if url.startswith("sqlite"):
        # Optuna commits every suggested parameter on its own; in WAL mode synchronous=NORMAL
        # skips the fsync per commit (a crash of the process still loses nothing committed).
        event.listen(ostorage.engine, "connect", _optuna_pragmas)
        ostorage.engine.dispose()
    return ostorage


def _optuna_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def recover_stale(url: str, study_name: str, ostorage: optuna.storages.RDBStorage | None = None,
                  retries: int = 0) -> int:
    """Mark trials of dead workers failed in both stores and queue each one's architecture again
    unless it has had ``retries`` retries; returns how many were recovered.

    Any worker may run this at any time: the row is failed by a conditional update, so of several
    workers noticing the same dead trial exactly one recovers it (and queues its retry).
    """
    ostorage = ostorage or optuna_storage(url)
    now = db.utcnow()
    recovered = 0
    with db.session_scope(url) as s:
        rows = s.execute(select(TrialResult.id, TrialResult.hostname, TrialResult.pid,
                                TrialResult.heartbeat_at, TrialResult.optuna_trial_id,
                                TrialResult.number)
                         .where(TrialResult.study == study_name,
                                TrialResult.state == store.RUNNING)).all()
    for r in rows:
        if not liveness.is_dead(r.hostname, r.pid, r.heartbeat_at):
            continue
        with db.session_scope(url) as s:
            won = s.execute(update(TrialResult).where(
                TrialResult.id == r.id, TrialResult.state == store.RUNNING).values(
                state=store.FAILED, finished_at=now,
                reason=(f"{INTERRUPTED}: its worker (pid {r.pid} on {r.hostname}) stopped "
                        "before the trial finished"))).rowcount == 1
        if not won:
            continue
        recovered += 1
        if r.optuna_trial_id is not None:
            _fail_optuna_trial(ostorage, r.optuna_trial_id)
            _retry(ostorage, study_name, r.optuna_trial_id, retries)
    # Optuna trials left RUNNING with no running row of ours (a crash right after ``ask``).
    # The rows read above are the running ones: a dead one's trial was just failed (by this
    # worker or the one that won it), and a row newer than that read has a trial younger than
    # the grace below.
    try:
        study_id = ostorage.get_study_id_from_name(study_name)
    except KeyError:
        return recovered
    live = {r.number for r in rows}
    for t in ostorage.get_all_trials(study_id, deepcopy=False,
                                     states=(optuna.trial.TrialState.RUNNING,)):
        if t.number in live:
            continue
        started = t.datetime_start
        # Optuna stamps trials with naive local time, unlike our UTC columns
        if started is not None and (datetime.now() - started.replace(tzinfo=None)
                                    ).total_seconds() < liveness.grace_s():
            continue
        _fail_optuna_trial(ostorage,
                           ostorage.get_trial_id_from_study_id_trial_number(study_id, t.number))
    return recovered


def _retry(ostorage: optuna.storages.RDBStorage, study_name: str, trial_id: int,
           retries: int) -> None:
    """Queue the dead trial's parameters as a new trial, marked as the next attempt."""
    trial = ostorage.get_trial(trial_id)
    attempt = int(trial.user_attrs.get(ATTEMPT_ATTR, 1))
    if attempt > retries or not trial.params:  # no params: it died before sampling anything
        return
    study = optuna.load_study(study_name=study_name, storage=ostorage)
    study.enqueue_trial(trial.params, user_attrs={ATTEMPT_ATTR: attempt + 1,
                                                  "retry_of": trial.number})


def _fail_optuna_trial(ostorage: optuna.storages.RDBStorage, trial_id: int) -> None:
    try:
        ostorage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
        pass


def _counted(study_name: str):
    """Rows that use the trial budget: everything but infeasible and interrupted trials."""
    return and_(
        TrialResult.study == study_name,
        TrialResult.state != store.INFEASIBLE,
        not_(and_(TrialResult.state == store.FAILED,
                  TrialResult.reason.like(f"{INTERRUPTED}%"))),
    )


def budget_count(url: str, study_name: str) -> int:
    with db.session_scope(url) as s:
        return int(s.scalar(select(func.count()).select_from(TrialResult)
                            .where(_counted(study_name))) or 0)


# -- the search ----------------------------------------------------------------------------------

@dataclass
class _Context:
    recipe: StudyRecipe
    name: str
    url: str
    worker: int
    quota: _Quota
    #: the study's cap on trials, whoever runs them (--max-trials)
    max_trials: int | None
    deadline: float | None
    progress: bool
    retries: int = 0
    #: receives a line per finished trial (the CLI prints them)
    report: Callable[[Outcome], None] | None = None
    #: torch intra-op threads of a spawned worker (the cores shared among the workers)
    threads: int | None = None
    #: the one device a spawned worker is pinned to (--devices), None to leave it as it is
    pin: str | None = None


class _Quota:
    """This command's trial budget (``--budget N``), shared by its worker processes."""

    def __init__(self, trials: int | None) -> None:
        self.left = mp.get_context("spawn").Value("i", trials) if trials is not None else None

    def take(self) -> bool:
        if self.left is None:
            return True
        with self.left.get_lock():
            if self.left.value <= 0:
                return False
            self.left.value -= 1
            return True

    def give_back(self) -> None:
        """The trial did not use the budget (infeasible, or the study's cap was reached)."""
        if self.left is not None:
            with self.left.get_lock():
                self.left.value += 1


def _directions(objectives: tuple[Objective, ...]) -> list[str]:
    return [o.optuna_direction for o in objectives]


def open_study(recipe: StudyRecipe, name: str, url: str, sampler_seed: int,
               ostorage: optuna.storages.RDBStorage | None = None) -> optuna.Study:
    """Create or load the Optuna study; refuse to resume one with other objectives."""
    ostorage = ostorage or optuna_storage(url)
    directions = _directions(recipe.objectives)
    sampler = make_sampler(recipe, sampler_seed)
    try:
        existing = optuna.load_study(study_name=name, storage=ostorage, sampler=sampler)
    except KeyError:
        existing = None
    if existing is not None:
        have = [d.name.lower() for d in existing.directions]
        names = existing.user_attrs.get("objectives")
        wanted = [str(o) for o in recipe.objectives]
        if have != directions or (names is not None and names != wanted):
            raise ConfigError(
                f"study {name!r} already exists with objectives {names or have}, not {wanted}; "
                "choose another --name to start a new study"
            )
        space = existing.user_attrs.get("space_key")  # absent in studies from older versions
        if space is not None and space != recipe.space_key():
            was = existing.user_attrs.get("recipe", {}).get("space", "?")
            raise ConfigError(
                f"study {name!r} already exists with other search-space parameters (it was "
                f"started with {was}; {recipe.space.path or recipe.space.name} differs); "
                "choose another --name to start a new study"
            )
        return existing
    try:
        study = optuna.create_study(study_name=name, storage=ostorage, sampler=sampler,
                                    directions=directions, load_if_exists=True)
    except optuna.exceptions.DuplicatedStudyError:  # pragma: no cover - raced by a worker
        study = optuna.load_study(study_name=name, storage=ostorage, sampler=sampler)
    if not study.user_attrs.get("objectives"):
        study.set_user_attr("objectives", [str(o) for o in recipe.objectives])
        study.set_user_attr("recipe", recipe.to_dict())
        study.set_user_attr("space_key", recipe.space_key())
        try:
            with _quiet_optuna():
                study.set_metric_names([o.name for o in recipe.objectives])
        except Exception:  # noqa: BLE001, S110 - only labels for optuna-dashboard; never fatal
            pass
    return study


def _heartbeat(url: str, row_id: int, ostorage: Any, trial_id: int) -> AbstractContextManager[None]:
    """Keeps a running trial's heartbeat fresh in both stores while it trains."""

    def beat() -> None:
        with db.session_scope(url) as s:
            s.execute(update(TrialResult).where(TrialResult.id == row_id)
                      .values(heartbeat_at=db.utcnow()))
        ostorage.record_heartbeat(trial_id)

    return liveness.beating(beat)


def _reserve(url: str, name: str, cap: int | None, env_id: int, training: TrainingSpec,
             latency: LatencySpec) -> int | None:
    """Insert this worker's ``running`` row; None when the study already has ``cap`` trials
    (finished or running, of any worker on any host).

    The count and the insert must be one step, or racing workers all see room and overshoot:
    :func:`~edgeexplore.search.repeats.study_lock` serialises them (on SQLite the insert comes
    first and takes the write lock).
    """
    with db.session_scope(url) as s:
        study_lock(s, name)
        row = new_trial_row(name, training, latency, env_id)
        s.add(row)
        s.flush()
        row_id = row.id
        if cap is not None:
            counted = s.scalar(select(func.count()).select_from(TrialResult)
                               .where(_counted(name))) or 0
            if counted > cap:  # our own row is among them
                s.execute(delete(TrialResult).where(TrialResult.id == row_id))
                return None
    return row_id


def _worker(ctx: _Context) -> list[Outcome]:
    """One process's share of the search: ask, evaluate, tell, until the budget is spent."""
    from .trial import TrialRunner

    recipe = ctx.recipe
    ostorage = optuna_storage(ctx.url)
    with db.session_scope(ctx.url) as s:
        env_id = store.get_or_create_environment(s, store.describe_environment()).id
        already = s.scalar(select(func.count()).select_from(TrialResult)
                           .where(TrialResult.study == ctx.name)) or 0
    # A different sampler seed per run and worker: a resumed study must not re-propose the
    # same sequence of architectures it proposed the first time.
    sampler_seed = (recipe.seed * 1_000_003 + already * 7919 + ctx.worker) % (2**31)
    study = open_study(recipe, ctx.name, ctx.url, sampler_seed, ostorage)
    study_id = ostorage.get_study_id_from_name(ctx.name)
    runner = TrialRunner(recipe, ctx.url, ctx.name, progress=ctx.progress)
    outcomes: list[Outcome] = []
    failures = 0
    infeasible_run = 0
    row_id: int | None = None  # reserved, not used yet: a repeat leaves it to the next sample
    try:
        while True:
            if ctx.deadline is not None and time.time() >= ctx.deadline:
                break
            if infeasible_run >= MAX_INFEASIBLE_PER_TRIAL:
                raise ConfigError(
                    f"{infeasible_run} samples in a row broke the space's constraints or were "
                    "not valid architectures; widen the space or relax its constraints"
                )
            if row_id is None:
                # a dead worker's trial is failed and queued again before this worker asks
                recover_stale(ctx.url, ctx.name, ostorage, ctx.retries)
                if not ctx.quota.take():
                    break
                row_id = _reserve(ctx.url, ctx.name, ctx.max_trials, env_id, runner.training,
                                  runner.latency)
                if row_id is None:
                    ctx.quota.give_back()
                    break
            with _quiet_optuna():
                trial = study.ask()
            trial_id = ostorage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            link = {"optuna_trial_id": trial_id, "optuna_study_id": study_id,
                    "number": trial.number}
            # the runner marks the row failed (Ctrl-C included) before the exception gets here
            try:
                with _heartbeat(ctx.url, row_id, ostorage, trial_id):
                    outcome = runner.run(trial, row_id, link)
            except KeyboardInterrupt:
                row_id = None
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise
            except Exception as e:  # recorded, then the search goes on or stops
                if _finished_elsewhere(ostorage, trial_id):
                    row_id = None
                    continue  # see below: the retry owns the trial now
                reason = failure_reason(e)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                outcome = Outcome(store.FAILED, reason=reason, id=row_id, number=trial.number)
                row_id = None
                failures += 1
                if ctx.report:
                    ctx.report(outcome)
                outcomes.append(outcome)
                # A user-facing error (backend unavailable, energy not measurable, ...) would hit
                # every trial alike: stop at once. Other errors may be one architecture's; go on.
                if failures >= MAX_CONSECUTIVE_FAILURES or isinstance(e, EdgeExploreError):
                    raise EdgeExploreError(f"trial {trial.number} failed: {reason}") from e
                continue
            failures = 0
            if isinstance(outcome, Repeat):
                # Not a new infeasible architecture (no row, no line), but still a sample that
                # broke the constraints: a space with nothing feasible must end in the guard.
                infeasible_run += 1
                trial.set_user_attr("repeat_of", outcome.of)
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            row_id = None
            infeasible_run = infeasible_run + 1 if outcome.state == store.INFEASIBLE else 0
            if outcome.state == store.INFEASIBLE:
                ctx.quota.give_back()
            try:
                _tell(study, trial, outcome, recipe.objectives)
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
                if not _finished_elsewhere(ostorage, trial_id):
                    raise
                # Another worker took this one for dead (its heartbeat went silent past the
                # grace on a starved machine), failed the trial and queued its retry: Optuna
                # cannot be told twice, and the retry's result is the one the study keeps.
                # (Looked up only here: a state read per trial would cost every trial.)
                continue
            if ctx.report:
                ctx.report(outcome)
            outcomes.append(outcome)
    finally:
        if row_id is not None:  # reserved for a sample this worker will not draw
            _unreserve(ctx.url, row_id)
            ctx.quota.give_back()
    return outcomes


def _unreserve(url: str, row_id: int) -> None:
    with db.session_scope(url) as s:
        s.execute(delete(TrialResult).where(TrialResult.id == row_id))


def _finished_elsewhere(ostorage: optuna.storages.RDBStorage, trial_id: int) -> bool:
    return ostorage.get_trial(trial_id).state.is_finished()


def _tell(study: optuna.Study, trial: optuna.Trial, o: Outcome,
          objectives: tuple[Objective, ...]) -> None:
    trial.set_user_attr("edgeexplore_id", o.id)
    trial.set_user_attr("edgeexplore_state", o.state)
    if o.arch_hash:
        trial.set_user_attr("arch_hash", o.arch_hash)
    if o.reason:
        trial.set_user_attr("reason", o.reason[:500])
    for key in ("accuracy", "latency_ms", "flops", "params", "energy_mj"):
        v = getattr(o, key)
        if v is not None:
            trial.set_user_attr(key, v)
    if o.state == store.COMPLETE:
        values = [getattr(o, obj.name) for obj in objectives]
        if all(v is not None and math.isfinite(float(v)) for v in values):
            study.tell(trial, [float(v) for v in values])
            return
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    elif o.state in (store.INFEASIBLE, store.PRUNED):
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _spawn_worker(ctx: _Context, queue: Any) -> None:
    """Entry point of a spawned worker process (module-level so spawn can import it)."""
    if ctx.pin is not None:
        devs.pin(ctx.pin)  # before anything here starts CUDA
    import torch

    if ctx.threads:
        torch.set_num_threads(ctx.threads)

    def report(o: Outcome) -> None:
        queue.put(("trial", o))

    ctx.report = report
    try:
        with interrupts.guard():
            _worker(ctx)
        queue.put(("done", ctx.worker))
    except KeyboardInterrupt:
        queue.put(("interrupted", ctx.worker))
    except EdgeExploreError as e:
        queue.put(("error", str(e)))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which prints it
        queue.put(("error", f"{type(e).__name__}: {e}"))


def run_study(
    recipe: StudyRecipe,
    budget: Budget,
    name: str | None = None,
    storage: str | None = None,
    workers: int = 1,
    progress: bool = True,
    report: Callable[[Outcome], None] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
    max_trials: int | None = None,
    retries: int = 1,
    devices: list[str] | None = None,
) -> SearchRun:
    """Run (or resume and extend) the study ``name`` for ``budget`` more trials or time, and at
    most until it has ``max_trials`` trials in all; ``devices`` runs one worker per device."""
    started = time.time()
    name = check_study_name(recipe.name if name is None else name)
    url = db.normalise_url(storage)
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    from ..latency.base import THREADS_PER_CORE_CAP, usable_cores

    cap = THREADS_PER_CORE_CAP * usable_cores()  # each worker is a process training a network
    if workers > cap:
        raise ConfigError(f"--workers must be at most {cap} ({THREADS_PER_CORE_CAP} per usable "
                          f"core of this machine), not {workers}")
    recipe.check_backends()  # before the store is created or any trial fails on it
    db.check_writable(url)
    if devices and workers != 1:
        raise ConfigError("--workers and --devices both set how many workers run; give one")
    if max_trials is not None and max_trials < 1:
        raise ConfigError(f"--max-trials must be at least 1, not {max_trials}")
    if retries < 0:
        raise ConfigError(f"--retries must be 0 or more, not {retries}")
    if budget.trials is None and budget.seconds is None and max_trials is None:
        raise ConfigError("give --budget, --max-trials, or both: the search needs an end")
    try:
        db.get_engine(url)
        ostorage = optuna_storage(url)
    except (DatabaseError, OperationalError) as e:
        raise EdgeExploreError(f"cannot open the store {db.shown(url)}: {db.error_reason(e)}") from None
    data = _check_data(recipe)
    open_study(recipe, name, url, recipe.seed, ostorage)
    recovered = recover_stale(url, name, ostorage, retries)
    _enqueue_presets(recipe, name, url, ostorage)
    before = budget_count(url, name)
    target = before + budget.trials if budget.trials is not None else None
    if max_trials is not None:
        target = max_trials if target is None else min(target, max_trials)
    deadline = started + budget.seconds if budget.seconds is not None else None
    if on_start:
        on_start({"name": name, "url": url, "before": before, "target": target,
                  "max_trials": max_trials, "recovered": recovered, "deadline": deadline,
                  "devices": devices, "data": data.describe()})
    ran: list[Outcome] = []
    interrupted = False
    ctx = _Context(recipe, name, url, 0, _Quota(budget.trials), max_trials, deadline, progress,
                   retries, report)
    try:
        if workers == 1 and not devices:
            ran = _worker(ctx)
        else:
            ran, interrupted = _run_workers(ctx, devices or [None] * workers)
    except KeyboardInterrupt:
        interrupted = True
    if not interrupted:
        from .trial import settle_latency

        # each trial settles the front when it ends, but a worker's trial may have ended while
        # another's measurements were moving the front: the front is measured before returning
        settle_latency(recipe, name, url)
    (study,) = summarise_studies(db.get_engine(url), [name])
    run = SearchRun(study, url, recipe, ran, time.time() - started, interrupted)
    if interrupted:
        raise StudyInterrupted(_resume_hint(run))
    return run


def resume_command(run: SearchRun) -> str:
    """The command that extends this study, runnable as printed (quoted, on the same store)."""
    words = ["edgeexplore", "search", run.recipe.label, "--name", run.study.name]
    if db.normalise_url(run.storage) != db.normalise_url(None):
        words += ["--storage", db.shown(run.storage)]  # a password is never printed
    return shlex.join(words) + " --budget N"


def _resume_hint(run: SearchRun) -> str:
    done = run.study.states.get(store.COMPLETE, 0)
    return (f"{done} complete trials of study {run.study.name!r} are stored in "
            f"{db.shown(run.storage)} (the trial in progress is marked failed). Resume with: "
            f"{resume_command(run)}")


def _run_workers(ctx: _Context, pins: list[str | None]) -> tuple[list[Outcome], bool]:
    """One spawned worker per entry of ``pins`` (its device, or None on CPUs), sharing ``ctx``'s
    budget; their trials are reported here as they finish."""
    mpctx = mp.get_context("spawn")
    queue = mpctx.Queue()
    workers = len(pins)
    threads = max(1, (os.cpu_count() or 1) // workers)
    report = ctx.report
    procs = []
    for i, pin in enumerate(pins):
        wctx = replace(ctx, worker=i, progress=False, report=None, threads=threads, pin=pin)
        p = mpctx.Process(target=_spawn_worker, args=(wctx, queue), daemon=False)
        p.start()
        procs.append(p)
    ran: list[Outcome] = []
    errors: list[str] = []
    interrupted = False
    finished = 0
    try:
        while finished < workers:
            try:
                kind, payload = queue.get(timeout=1.0)
            except Exception:  # noqa: BLE001 - queue.Empty: check the workers are alive
                if all(not p.is_alive() for p in procs):
                    break
                continue
            if kind == "trial":
                ran.append(payload)
                if report:
                    report(payload)
            else:
                finished += 1
                if kind == "error":
                    errors.append(payload)
                elif kind == "interrupted":
                    interrupted = True
    except KeyboardInterrupt:
        interrupted = True
    for p in procs:
        p.join(timeout=60)
    if errors and not interrupted:
        raise EdgeExploreError(errors[0])
    return ran, interrupted


def _check_data(recipe: StudyRecipe) -> Any:
    """Load the data once before any trial, so a missing folder is one clear error up front
    (and what was found can be said once)."""
    from ..data import load_data

    return load_data(recipe.data, resolution=recipe.resolution or recipe.space.resolution[0],
              subset=recipe.subset, val_subset=recipe.val_subset, seed=recipe.seed)


def _enqueue_presets(recipe: StudyRecipe, name: str, url: str,
                     ostorage: optuna.storages.RDBStorage) -> None:
    """Queue the recipe's presets once (the first time the study runs), if they fit the space."""
    if not recipe.enqueue:
        return
    study = optuna.load_study(study_name=name, storage=ostorage)
    if study.user_attrs.get("enqueued"):
        return
    for preset in recipe.enqueue:
        cfg: ArchConfig = PRESETS[preset]
        if recipe.resolution is not None:
            cfg = cfg.replace(resolution=recipe.resolution)
        why = recipe.space.why_not(cfg, check_resolution=recipe.resolution is None)
        if why:
            raise ConfigError(f"enqueue: preset {preset} is not in the space ({why})")
        study.enqueue_trial(recipe.space.params_for(cfg, check_resolution=recipe.resolution
                                                    is None), skip_if_exists=True)
    study.set_user_attr("enqueued", list(recipe.enqueue))


def summary_rows(url: str, name: str) -> list[TrialResult]:
    """Every trial result of the study (for the final table)."""
    with db.session_scope(url) as s:
        return store.get_trials(s, name)


__all__ = [
    "Budget", "SearchRun", "StudyInterrupted", "budget_count", "make_sampler",
    "open_study", "optuna_storage", "parse_budget", "recover_stale", "resume_command", "run_study", "summary_rows",
]
