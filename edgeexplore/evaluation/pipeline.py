"""The one evaluation pipeline: an architecture and its specs in, one stored :class:`Outcome` out.

Stages, each skipped when not asked for and each timed into ``Outcome.timings``:

1. **sample** (only when given a callable, as a search does): a :class:`ConfigError` makes the
   evaluation ``infeasible``;
2. **cost**: parameters, FLOPs and activations, from the ``architectures`` table when the
   architecture is known (counting traces the model), else counted; an architecture the builder
   refuses is ``infeasible``; ``limits.check_cost`` may reject it;
3. **latency** (with a :class:`LatencySpec`): cached per architecture, input, backend, settings
   and device; ``limits.check_latency`` may reject it; a spec with a ``prediction`` predicts it
   instead once the device's predictor is trusted (:mod:`.predicted`, which also decides, after
   a search's trial, which predicted trials to measure);
4. **train** (with a :class:`TrainingSpec`): reuse an earlier training of the same architecture
   with the same spec key (the recorder's own kind first, then any ``trial_results`` row of any
   study or ablation; ``force`` skips this), else train: a proxy training ends ``complete``,
   ``pruned`` (stopped early), or ``diverged``; a full training (kind ``full``, run as
   :class:`FullRun` says) ``complete`` or ``stopped`` (``stop_after``). Training needs the claim
   on (architecture, spec key) (:mod:`edgeexplore.store.claims`), held until the result is
   stored: a process that finds another one training the same thing waits and reuses its result,
   so concurrent workers on any hosts train it once;
5. **store**: the architecture and the caller's row in one transaction.

Any exception (Ctrl-C included) is first reported to the recorder, so the row says ``failed``
with the reason, then raised again. What was known by then stays with the row: the architecture
(stored, so its hash can be kept and the trial re-run), its cost and latency, and the per-epoch
curve of the epochs finished before the interruption.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from types import SimpleNamespace
from typing import Any, Protocol

from .. import store
from ..config import ArchConfig
from ..errors import ConfigError
from ..store import claims, db, liveness
from ..store.trainings import STOPPED
from . import predicted
from .outcome import Outcome, Prior, failure_reason
from .recorders import Recorder, prior_from_row
from .specs import EarlyStop, FullRun, LatencySpec, TrainingSpec


class Limits(Protocol):
    """Hard constraints checked before anything is trained (a search space's)."""

    def check_cost(self, params: int, flops: int) -> str | None: ...

    def check_latency(self, cfg: ArchConfig, measurement: Any) -> str | None: ...


def evaluate(
    arch: ArchConfig | Callable[[], ArchConfig],
    recorder: Recorder,
    *,
    training: TrainingSpec | None = None,
    latency: LatencySpec | None = None,
    storage: str | None = None,
    limits: Limits | None = None,
    early_stop: EarlyStop | None = None,
    data: Any = None,
    progress: bool = True,
    run: FullRun | None = None,
    force: bool = False,
) -> Outcome:
    """Evaluate ``arch`` and store it through ``recorder``; see the module docstring.

    ``data`` is an already loaded bundle for ``training`` (an ablation loads it once for all
    its runs); by default the spec's data is loaded at the architecture's resolution. ``run``
    is required by a ``full`` spec; ``force`` trains even when a stored training could be reused.
    """
    url = db.normalise_url(storage)
    started = time.perf_counter()
    out = Outcome(store.RUNNING)
    known = _Known()
    try:
        with ExitStack() as claim:  # a won training claim is released after the store
            cfg, cost = _stages(arch, out, known, recorder, url, training, latency, limits,
                                early_stop, data, progress, run, force, claim)
            _store(out, cfg, cost, url, recorder, started)
    except BaseException as e:
        _store_failure(out, known, url, recorder, failure_reason(e))
        raise
    return out


class _Known:
    """The architecture and its cost as soon as the stages know them (a failure keeps them)."""

    cfg: ArchConfig | None = None
    cost: Any = None


def _store_failure(out: Outcome, known: _Known, url: str, recorder: Recorder,
                   reason: str) -> None:
    out.state, out.reason = store.FAILED, reason
    if known.cfg is not None:
        # the row's arch_hash needs the architecture's row (a foreign key)
        with db.session_scope(url) as s:
            store.upsert_architecture(s, known.cfg, known.cost)
    recorder.failed(reason, out)


@contextmanager
def _timed(out: Outcome, name: str) -> Iterator[None]:
    t = time.perf_counter()
    try:
        yield
    finally:
        out.timings[name] = time.perf_counter() - t


def _stages(arch, out, known, recorder, url, training, latency, limits, early_stop, data,
            progress, run, force, claim):
    """Run the stages into ``out`` (and ``known``); returns the architecture and its cost
    (None where unknown)."""
    if callable(arch):
        with _timed(out, "sample_seconds"):
            try:
                cfg = arch()
            except ConfigError as e:
                out.state, out.reason = store.INFEASIBLE, f"not a valid architecture: {e}"
                return None, None
    else:
        cfg = arch
    known.cfg = cfg
    out.arch_hash, out.description = cfg.hash, cfg.describe()
    out.resolution = f"{cfg.resolution[0]}x{cfg.resolution[1]}"

    with _timed(out, "cost_seconds"):
        try:
            cost = _cost(cfg, url)
        except ConfigError as e:
            # valid as a config, but the builder refuses it (e.g. a window larger than the map)
            out.state, out.reason = store.INFEASIBLE, f"cannot be built: {e}"
            return cfg, None
    known.cost = cost
    out.flops, out.params = int(cost.flops), int(cost.params)
    out.activations = int(cost.activations)
    why = limits.check_cost(out.params, out.flops) if limits else None

    if latency is not None and not why:
        with _timed(out, "latency_seconds"):
            why = _latency(cfg, latency, url, out, limits)
    if why:
        out.state, out.reason = store.INFEASIBLE, why
        return cfg, cost

    if training is None:
        out.state = store.COMPLETE
        return cfg, cost
    prior = None if force else _claim_or_reuse(cfg, training, recorder, url, claim)
    if prior is not None:
        out.take_prior(prior)
        out.state = store.COMPLETE
        out.timings["train_seconds"] = 0.0
        return cfg, cost
    recorder.start()
    with _timed(out, "train_seconds"):
        if training.kind == "full":
            _train_full(cfg, training, out, run, recorder)
        else:
            _train(cfg, training, out, url, data, early_stop, progress)
    return cfg, cost


def _latency(cfg: ArchConfig, latency: LatencySpec, url: str, out: Outcome,
             limits: Limits | None) -> str | None:
    """Measure ``cfg``, or predict it when the spec says so (:mod:`.predicted`), into ``out``;
    returns why the limits reject it (None: they do not)."""
    if latency.prediction is not None:
        prediction = predicted.predict(cfg, latency, url)
        if prediction is not None:
            out.take_prediction(prediction)
            if limits is None:
                return None
            low, high = predicted.bounds(prediction)
            why = limits.check_latency(cfg, predicted.Bound(low))
            if why or not limits.check_latency(cfg, predicted.Bound(high)):
                # even its lowest possible latency breaks a limit, or its highest keeps them all
                return why
            # the predictor's error straddles a limit: only a measurement can decide
    m = latency.measure(cfg, url)
    out.take_latency(m)
    return limits.check_latency(cfg, m) if limits else None


def _cost(cfg: ArchConfig, url: str) -> Any:
    """The stored cost of a known architecture, else a fresh count (traces the model)."""
    with db.session_scope(url) as s:
        row = store.get_architecture(s, cfg.hash)
        if row is not None and row.flops is not None:
            return SimpleNamespace(params=row.params, flops=row.flops,
                                   activations=row.activations, per_stage=row.per_stage)
    from ..cost import count_cost

    return count_cost(cfg)


def _claim_or_reuse(cfg: ArchConfig, training: TrainingSpec, recorder: Recorder, url: str,
                    claim: ExitStack) -> Prior | None:
    """An earlier result to reuse, else None once this process holds the training claim
    (entered into ``claim``); meanwhile another process's training of it is waited for."""
    if int(os.environ.get("RANK", "0")) != 0:
        # torchrun's ranks are one trainer: rank 0 holds the claim for all of them (a second
        # rank waiting for rank 0's result while rank 0 waits for it in a collective would hang)
        return _find_prior(cfg, training, recorder, url)
    while True:
        prior = _find_prior(cfg, training, recorder, url)
        if prior is not None:
            return prior
        with db.session_scope(url) as s:
            won = claims.try_claim(s, cfg.hash, training.key)
        if won:
            claim.enter_context(claims.held(url, cfg.hash, training.key))
            # the holder may have stored its result and let go just before we claimed
            prior = _find_prior(cfg, training, recorder, url)
            return prior
        time.sleep(min(2.0, liveness.heartbeat_s()))


def _find_prior(cfg: ArchConfig, training: TrainingSpec, recorder: Recorder, url: str
                ) -> Prior | None:
    with db.session_scope(url) as s:
        prior = recorder.prior(s, cfg, training)
        if prior is None:
            row = store.find_reusable(s, cfg.hash, training.key)
            prior = prior_from_row(row) if row is not None else None
    return prior


def _train(cfg: ArchConfig, training: TrainingSpec, out: Outcome, url: str, data: Any,
           early_stop: EarlyStop | None, progress: bool) -> None:
    from ..models import build
    from ..training import proxy

    recipe = proxy.ProxyRecipe.from_dict(training.recipe)
    bundle = data if data is not None else training.load_data(cfg.resolution)
    on_epoch = early_stop.callback(url, training.key) if early_stop else None
    proxy.seed_everything(training.seed)  # identical initial weights for the same seed
    model = build(recipe.arch_for(cfg))
    so_far: list[dict[str, float]] = []
    try:
        res = proxy.train_proxy(model, bundle, recipe, seed=training.seed, on_epoch=on_epoch,
                                progress=progress, curve=so_far)
    except proxy.DivergedError as e:
        # cost and latency are kept, and the curve up to the bad epoch
        out.state, out.reason = store.DIVERGED, str(e)
        partial = e.result
        out.curve = json.dumps(partial.curve) if partial else None
        out.epochs = partial.epochs if partial else e.epoch
        out.images_per_second = partial.images_per_second if partial else None
        return
    except BaseException:
        # interrupted or failed: the row keeps the epochs finished so far
        out.curve = json.dumps(so_far) if so_far else None
        out.epochs = len(so_far)
        raise
    out.accuracy = float(res.accuracy)
    out.curve, out.epochs = json.dumps(res.curve), res.epochs
    out.images_per_second = res.images_per_second
    out.metrics.update(best_accuracy=res.best_accuracy, eval_seconds=res.eval_seconds,
                       steps=res.steps, device=res.device, amp=res.amp,
                       channels_last=res.channels_last)
    if res.status == "stopped_early" and early_stop is not None:
        out.state, out.reason = store.PRUNED, early_stop.reason(res.epochs, res.accuracy)
    else:
        out.state = store.COMPLETE


def _train_full(cfg: ArchConfig, training: TrainingSpec, out: Outcome, run: FullRun | None,
                recorder: Recorder) -> None:
    from ..training.full import train
    from ..training.recipe import TrainRecipe

    if run is None:
        raise ConfigError("a full training needs an output folder (FullRun)")
    # a resumed run takes its architecture, recipe, data and seed from its own checkpoint
    args = (None, None) if run.resume else (cfg, training.data.spec)
    summary = train(*args, run.output, TrainRecipe.from_dict(training.recipe),
                    seed=training.seed, resume=run.resume, stop_after=run.stop_after,
                    device=run.device, log=run.log, on_epoch=recorder.epoch)
    best = summary["best"]
    out.accuracy = best["top1"] / 100 if best.get("epoch") else None
    out.epochs = summary["epochs_done"]
    out.metrics["full"] = summary
    out.state = store.COMPLETE if summary["finished"] else STOPPED


def _store(out: Outcome, cfg: ArchConfig | None, cost: Any, url: str, recorder: Recorder,
           started: float) -> None:
    t = time.perf_counter()
    with db.session_scope(url) as s:
        if cfg is not None:
            store.upsert_architecture(s, cfg, cost)
            s.flush()  # the result row's foreign key needs the architecture row first
        recorder.write(s, out)
    out.timings["store_seconds"] = time.perf_counter() - t
    out.timings["total_seconds"] = time.perf_counter() - started
    recorder.times(url, out)
