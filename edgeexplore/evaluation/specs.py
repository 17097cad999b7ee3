"""What an evaluation is asked to do: how to train (and on what), how to time, when to give up.

A :class:`TrainingSpec` is the identity of a training: two trainings of one architecture with
equal specs give the same result, so the second reuses the first. Its :attr:`~TrainingSpec.key`
(a hash of :meth:`~TrainingSpec.canonical`) is the only reuse key in the program; searches,
ablations and preset points all find each other's results through it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..config import ArchConfig
from ..errors import ConfigError

#: training kinds the pipeline can run: the short proxy, and training in full (training.full)
KINDS = ("proxy", "full")


@dataclass(frozen=True)
class DataSpec:
    """The training data: a data spec string (``synthetic``, ``cifar10``, ``folder:PATH``) and
    the images per class kept for training and validation; ``resolution`` is the input size the
    data is fixed to (None when each architecture brings its own)."""

    spec: str
    subset: int | None = None
    val_subset: int | None = None
    resolution: tuple[int, int] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        if not isinstance(d, dict) or not d.get("spec"):
            raise ConfigError(f"a data spec needs at least 'spec' (e.g. synthetic), not {d!r}")
        res = d.get("resolution")
        return cls(str(d["spec"]), d.get("subset"), d.get("val_subset"),
                   tuple(int(x) for x in res) if res else None)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "subset": self.subset, "val_subset": self.val_subset,
                "resolution": list(self.resolution) if self.resolution else None}

    def label(self) -> str:
        """How the ``data`` column shows it."""
        return self.spec + (f" subset={self.subset}" if self.subset else "")


@dataclass(frozen=True)
class TrainingSpec:
    """A recipe (a dict of the trainer's settings), the data and the seed.

    ``recipe`` is the trainer's full settings as its ``to_dict()`` gives them (defaults filled
    in), so a recipe written out in full and one relying on defaults share a key.
    """

    recipe: dict[str, Any] = field(hash=False)
    data: DataSpec
    seed: int = 0
    kind: str = "proxy"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"training kind {self.kind!r} is not known; use one of "
                              f"{', '.join(KINDS)}")

    @classmethod
    def proxy(cls, recipe: Any, data: DataSpec | dict[str, Any], seed: int = 0) -> TrainingSpec:
        """A proxy training; ``recipe`` a ProxyRecipe or a mapping of its fields."""
        from ..training.proxy import ProxyRecipe

        if not isinstance(recipe, ProxyRecipe):
            recipe = ProxyRecipe.from_dict(recipe)
        data = data if isinstance(data, DataSpec) else DataSpec.from_dict(data)
        return cls(recipe.to_dict(), data, int(seed))

    @classmethod
    def full(cls, recipe: Any, data: str, seed: int = 0) -> TrainingSpec:
        """A full training; ``recipe`` a TrainRecipe or a mapping of its fields, ``data`` the
        data spec string ``edgeexplore train --data`` takes."""
        from ..training.recipe import TrainRecipe

        if not isinstance(recipe, TrainRecipe):
            recipe = TrainRecipe.from_dict(recipe)
        return cls(recipe.to_dict(), DataSpec(str(data)), int(seed), "full")

    @property
    def epochs(self) -> int:
        """The epochs the recipe plans (both trainers name them ``epochs``)."""
        return int(self.recipe["epochs"])

    def canonical(self) -> dict[str, Any]:
        """Everything that decides the result, as plain JSON types.

        A proxy spec leaves its kind out, so keys stored before kinds existed stay valid; any
        other kind is part of its own key.
        """
        d = {"recipe": self.recipe, "data": self.data.to_dict(), "seed": self.seed}
        if self.kind != "proxy":
            d["kind"] = self.kind
        return d

    @property
    def key(self) -> str:
        """The reuse key: same architecture + same key → the stored result is reused."""
        blob = json.dumps(self.canonical(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def load_data(self, resolution: tuple[int, int]) -> Any:
        from ..data import load_data

        d = self.data
        return load_data(d.spec, resolution=resolution, subset=d.subset,
                         val_subset=d.val_subset, seed=self.seed)


@dataclass
class FullRun:
    """How a full training runs, beside its spec (none of it changes the result, so none of it
    is in the key): the output folder, continuing the run there, where to stop, the device."""

    output: str
    resume: bool = False
    stop_after: int | None = None
    device: str | None = None
    log: Any = print


@dataclass(frozen=True)
class Prediction:
    """How a ``predicted`` latency spec uses the device's learned predictor
    (:mod:`edgeexplore.evaluation.predicted`): trials are measured until the predictor has
    ``min_measured`` architectures, and it is refitted after ``refit_every`` new measurements."""

    min_measured: int = 8
    refit_every: int = 5

    def __post_init__(self) -> None:
        from ..latency.predictor import MIN_SAMPLES

        for name, low in (("min_measured", MIN_SAMPLES), ("refit_every", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"{name} must be an integer of at least {low}, not {v!r}")


@dataclass(frozen=True)
class LatencySpec:
    """A latency backend and its settings (``batch`` and ``threads`` apart, as the backends take
    them); the input shape comes from the architecture's resolution and ``batch``.

    With a ``prediction``, latency is predicted by the learned predictor of this backend,
    settings and device, and measured on the backend only where :mod:`.predicted` says so.
    """

    backend: str
    settings: dict[str, Any] = field(default_factory=dict, hash=False)
    batch: int = 1
    threads: int | None = None
    prediction: Prediction | None = None

    @classmethod
    def from_settings(cls, backend: str, settings: dict[str, Any] | None,
                      prediction: Prediction | None = None) -> LatencySpec:
        """From a recipe's (or a stored row's) settings, where batch and threads sit inside."""
        s = dict(settings or {})
        return cls(backend, s, int(s.pop("batch", 1)), s.pop("threads", None), prediction)

    def to_dict(self) -> dict[str, Any]:
        threads = {} if self.threads is None else {"threads": self.threads}
        return {**self.settings, "batch": self.batch, **threads}

    def measure(self, cfg: ArchConfig, storage: str) -> Any:
        """Time ``cfg`` (cached in the store per architecture, input, backend, settings, device)."""
        from ..latency import measure_arch
        from ..store import db

        return measure_arch(cfg, backend=self.backend, batch=self.batch, threads=self.threads,
                            store=db.open_store(storage), **self.settings)


@dataclass(frozen=True)
class EarlyStop:
    """Stop a training whose best accuracy so far trails the study's completed trials (searches
    only: a training with no peers to compare with runs to the end)."""

    study: str
    quantile: float = 0.25
    min_trials: int = 4
    min_epoch: int = 1

    def callback(self, storage: str, key: str) -> Any:
        """The ``on_epoch`` callback, built on the curves completed so far with the same key
        (curves of another recipe or data are not comparable)."""
        from .. import store
        from ..store import db
        from ..training.proxy import early_stopper

        with db.session_scope(storage) as s:
            curves = store.completed_curves(s, self.study, key)
        return early_stopper(curves, quantile=self.quantile, min_trials=self.min_trials,
                             min_epoch=self.min_epoch)

    def reason(self, epochs: int, accuracy: float) -> str:
        return (f"stopped early at epoch {epochs}: accuracy {accuracy:.3f} below the "
                f"{self.quantile:.0%} quantile of completed trials")
