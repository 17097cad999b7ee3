"""The longer trainings behind ``edgeexplore fidelity``: one spec, the chosen trials, reuse.

:func:`long_spec` turns ``--recipe`` into one :class:`TrainingSpec`: ``longer-proxy`` is the
study's own proxy recipe, data and seed with its epochs multiplied (a proxy training, fast, with
a key of its own), a recipe FILE a full training. :func:`retrain` evaluates every chosen trial
with it through the pipeline into ``trainings``; a training already complete under the same key
is reused, so an interrupted run continues where it stopped (a full training from its last
checkpoint).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import ArchConfig
from ..errors import ConfigError, EdgeExploreError
from ..store import claims, db
from ..store.trainings import find_complete
from .pipeline import evaluate
from .specs import DataSpec, FullRun, TrainingSpec
from .trainings import TrainingRecorder, as_trained, train_full

LONGER_PROXY = "longer-proxy"


def long_spec(study: str, recipe: str, epochs_factor: float, data: str | None,
              storage: str | None) -> TrainingSpec:
    """The spec every chosen trial is retrained with (see the module docstring)."""
    from ..analysis.query import _study_training

    if recipe != LONGER_PROXY:
        from ..training.recipe import load_recipe

        if not data:
            raise ConfigError("a full-training --recipe needs --data (as `edgeexplore train`)")
        return TrainingSpec.full(load_recipe(recipe), data, 0)
    if not math.isfinite(epochs_factor) or epochs_factor <= 1:
        raise ConfigError(f"--epochs-factor must be above 1 for a longer proxy, not {epochs_factor}")
    t = _study_training([study], storage)
    if t is None or not (t.get("data") or {}).get("spec"):
        raise EdgeExploreError(f"study {study!r} records no proxy recipe and data (no complete "
                               "trial of a recipe-driven search); give a recipe FILE and --data")
    settings = dict(t["recipe"])
    settings["epochs"] = max(int(settings["epochs"]) + 1,
                             round(int(settings["epochs"]) * epochs_factor))
    spec_data = DataSpec.from_dict(t["data"])
    if data:  # the same subsets of another copy (e.g. cifar10:PATH on this machine)
        spec_data = replace(spec_data, spec=data)
    return TrainingSpec.proxy(settings, spec_data, t["seed"])


def retrain(trials: Sequence[Any], spec: TrainingSpec, storage: str | None, output: str | Path,
            device: str | None = None, log: Callable[[str], None] = print) -> int:
    """Train each candidate (``analysis.fidelity.Candidate``) with ``spec`` unless a complete
    training exists; returns how many were trained now. Full trainings go to
    ``output/ARCH_HASH``.

    Several ``fidelity`` processes on one store share the work: a candidate that another live
    process is training when its turn comes is put off to the end, by when its result is there
    to reuse (or, if that process died, its claim is taken over and it is trained here).
    """
    url = db.normalise_url(storage)
    jobs = []
    for n, c in enumerate(trials, 1):
        cfg = ArchConfig.from_json(c.config)
        if spec.kind == "full":
            cfg = as_trained(cfg, spec)
            c.trained_hash = cfg.hash
        jobs.append((f"[{n}/{len(trials)}] trial #{c.number} ({c.arch_hash})", cfg))
    put_off = []
    trained = 0
    for what, cfg in jobs:
        with db.session_scope(url) as s:
            busy = claims.busy_elsewhere(s, cfg.hash, spec.key)
        if busy:
            log(f"{what}: another process is training it; coming back to it at the end")
            put_off.append((what, cfg))
        else:
            trained += _retrain_one(what, cfg, spec, url, output, device, log)
    for what, cfg in put_off:
        trained += _retrain_one(what, cfg, spec, url, output, device, log)
    return trained


def _retrain_one(what: str, cfg: ArchConfig, spec: TrainingSpec, url: str, output: str | Path,
                 device: str | None, log: Callable[[str], None]) -> int:
    """Train ``cfg`` (or reuse its training); 1 when it was trained now."""
    from ..training.checkpoint import LAST

    if spec.kind == "full":
        folder = Path(output) / cfg.hash
        with db.session_scope(url) as s:
            done = find_complete(s, cfg.hash, spec.key) is not None
        resume = not done and (folder / LAST).is_file()
        out = train_full(cfg, spec, FullRun(str(folder.resolve()), resume, None, device, log), url)
    else:
        out = evaluate(cfg, TrainingRecorder(url, cfg, spec), training=spec, storage=url,
                       progress=False)
    if out.prior is not None:
        log(f"{what}: reused training ({out.prior.table} {out.prior.id})")
        return 0
    acc = "-" if out.accuracy is None else f"{100 * out.accuracy:.2f}%"
    log(f"{what}: trained {out.epochs} epochs, {out.state}, top-1 {acc}")
    return 1
