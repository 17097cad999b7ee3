"""``edgeexplore predictor fit|show|check``: the learned latency predictor of a device.

Thin wrappers over :mod:`edgeexplore.latency.device_predictor`.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..config import resolve_arch
from ..errors import EdgeExploreError
from ..latency.predictor import FEATURE_CHOICES
from .latency import parse_settings
from .options import SEED, console, format_option, storage_option
from .output import Column, emit


def _percent(v: Any) -> str:
    return "-" if v is None else f"{v:.0%}"


def _backend_options(f: Any) -> Any:
    """The options that pick what is timed, as ``measure`` spells them."""
    for opt in reversed([
        click.option("--backend", default="torch-cpu", show_default=True,
                     help="Latency backend the predictor learns (see `edgeexplore backends`)."),
        click.option("--threads", type=int, default=None,
                     help="Compute threads for CPU backends (default 1)."),
        click.option("--batch", type=int, default=1, show_default=True,
                     help="Batch size of the timed input."),
        click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
                     help="Backend setting, repeatable (as for `measure`): clock=thread-cpu, "
                          "command='adb ...', pattern=..."),
    ]):
        f = opt(f)
    return f


def _store(storage: str | None, *, create: bool = True) -> Any:
    """The store; ``create=False`` (show, check: they need a fitted predictor) refuses a missing
    file or one without our tables instead of making a new store there."""
    from ..store import open_store

    return open_store(storage, create=create)


@click.group("predictor")
def predictor_group() -> None:
    """A latency predictor learned from a few architectures measured on your device.

    `fit` measures the most diverse architectures of a search space (diverse in FLOPs per block
    kind, activations, module count, per-stage resolution and width), fits a regression and keeps
    it in the store with its cross-validated error; `show` prints that error; `check` compares
    predictions with measurements of architectures you name.
    """


@predictor_group.command("fit")
@click.option("--space", default="edgevit", show_default=True,
              help="Search space (name or YAML path) whose architectures are the candidates.")
@click.option("--samples", type=click.IntRange(min=1), default=30, show_default=True,
              help="Architectures to measure in all (those measured for it before count).")
@click.option("--candidates", type=click.IntRange(min=1), default=300, show_default=True,
              help="Random architectures of the space to choose them from.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the candidates.")
@click.option("--features", type=click.Choice(FEATURE_CHOICES), default="auto",
              show_default=True,
              help="units: also time each architecture's units (stem, blocks, head) on the "
                   "backend, the most accurate; analytic: nothing timed but the --samples "
                   "architectures; auto: units unless the backend is a remote device (command).")
@_backend_options
@storage_option("Latency cache and predictor")
def fit_cmd(space: str, samples: int, candidates: int, seed: int, features: str, backend: str,
            threads: int | None, batch: int, settings: tuple[str, ...],
            storage: str | None) -> None:
    """Measure up to --samples architectures on the backend and fit its predictor."""
    from ..latency.device_predictor import fit_device, measuring_backend
    from ..latency.measure import check_backend
    from ..search.space import random_configs, resolve_space

    if candidates < samples:
        raise EdgeExploreError(f"--candidates ({candidates}) must be at least --samples "
                               f"({samples})")
    # a backend that cannot run here is refused before the store is opened (or created)
    b = measuring_backend(check_backend(backend, batch=batch, threads=threads,
                                        **parse_settings(settings)))
    pool = random_configs(resolve_space(space), candidates, seed)
    out = console()
    with out.status("choosing architectures") as status:
        def progress(i: int, n: int, cfg: Any) -> None:
            status.update(f"measuring {i + 1}/{n}: {cfg.hash}")

        pred = fit_device(pool, samples, backend=b, batch=batch, store=_store(storage),
                          progress=progress, features=features)
    r = pred.report
    click.echo(f"fitted {pred.model.method} ({pred.features} features) on {len(pred.archs)} "
               f"measured architectures "
               f"({pred.device}); cross-validated: within 10% {_percent(r['within10'])}, "
               f"within 5% {_percent(r['within5'])}, MAPE {r['mape']:.1%}, "
               f"max {r['max_ape']:.1%}, tau {r['tau'] if r['tau'] is None else round(r['tau'], 3)}")


SHOW_COLUMNS = [
    Column("backend"), Column("settings"), Column("batch", right=True), Column("device"),
    Column("features"), Column("method"), Column("chosen"), Column("n", "measured", right=True),
    Column("within5", "within 5%", _percent, right=True),
    Column("within10", "within 10%", _percent, right=True),
    Column("mape", "MAPE", _percent, right=True),
    Column("max_ape", "max error", _percent, right=True),
    Column("tau", "tau", lambda v: "-" if v is None else f"{v:.3f}", right=True),
]


@predictor_group.command("show")
@storage_option("Latency cache and predictor")
@format_option()
def show_cmd(storage: str | None, fmt: str) -> None:
    """The stored predictors and the cross-validated error of every method they compared."""
    from ..store import latency as tables

    rows = []
    for p in tables.list_predictors(_store(storage, create=False)):
        for method, r in p["report"]["candidates"].items():
            rows.append({"backend": p["backend"], "settings": json.loads(p["settings"]),
                         "batch": p["batch"], "device": p["device"],
                         "features": p["features"], "method": method,
                         "chosen": method == p["method"], "n": r["n"],
                         **{k: r[k] for k in ("within5", "within10", "mape", "max_ape", "tau")}})
    emit(rows, fmt, SHOW_COLUMNS, title="Latency predictors (leave-one-out cross-validation)",
         empty="No latency predictor stored yet: run `edgeexplore predictor fit`.")


CHECK_COLUMNS = [
    Column("arch"), Column("hash"),
    Column("predicted_ms", "predicted (ms)", lambda v: f"{v:.2f}", right=True),
    Column("measured_ms", "measured (ms)", lambda v: f"{v:.2f}", right=True),
    Column("error", "error", lambda v: f"{v:+.1%}", right=True),
]


@predictor_group.command("check")
@click.argument("archs", nargs=-1, required=True, metavar="PRESET|CONFIG.json...")
@_backend_options
@storage_option("Latency cache and predictor")
@format_option()
def check_cmd(archs: tuple[str, ...], backend: str, threads: int | None, batch: int,
              settings: tuple[str, ...], storage: str | None, fmt: str) -> None:
    """Predict ARCHS, measure them (through the cache) and print both with the error."""
    from ..latency import measure_arch
    from ..latency.device_predictor import load_predictor

    store = _store(storage, create=False)
    values = parse_settings(settings)
    pred = load_predictor(backend, batch=batch, threads=threads, store=store, **values)
    if pred is None:
        raise EdgeExploreError(f"no latency predictor is stored for backend {backend!r} with these "
                               "settings on this device: run `edgeexplore predictor fit` first")
    cfgs = [resolve_arch(a) for a in archs]
    rows = []
    for name, cfg, p in zip(archs, cfgs, pred.predict(cfgs)):
        m = measure_arch(cfg, backend=backend, batch=batch, threads=threads, store=store,
                         **values).median_ms
        rows.append({"arch": name, "hash": cfg.hash, "predicted_ms": p, "measured_ms": m,
                     "error": (p - m) / m})
    r = pred.report
    emit(rows, fmt, CHECK_COLUMNS,
         title=f"Predicted ({pred.model.method}, {len(pred.archs)} measured; cross-validated "
               f"MAPE {r['mape']:.1%}) vs measured")


COMMANDS = [predictor_group]
