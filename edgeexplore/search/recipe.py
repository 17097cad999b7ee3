"""Study recipes: one YAML file naming the space, data, proxy recipe, objectives, backend, sampler.

A recipe is everything a study needs besides its budget, so the same file reproduces a study and
``edgeexplore search studies/cifar10.yaml --budget 20`` is the whole command. The schema is
documented in docs/study-recipes.md; every problem names the file, the key and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import PRESETS, parse_resolution
from ..errors import ConfigError, EdgeExploreError, reject_unknown_keys
from ..evaluation.specs import Prediction
from ..objectives import SEARCHABLE, Objective, add, make_objective
from ..shipped import shipped_dir
from ..yamlfile import read_yaml
from .space import SearchSpace, resolve_space

TOP_KEYS = (
    "name", "description", "space", "resolution", "data", "proxy", "objectives", "backend",
    "sampler", "seed", "early_stopping", "enqueue",
)
DATA_KEYS = ("spec", "subset", "val_subset")
EARLY_KEYS = ("enabled", "min_epoch", "quantile", "min_trials")

#: the backend name of latency predicted by the device's learned predictor (see evaluation.predicted)
PREDICTED = "predicted"

SAMPLERS = ("nsga2", "nsga3", "tpe", "random", "gp", "nni-evolution")


@dataclass(frozen=True)
class EarlyStopping:
    """Stop a trial whose accuracy at an epoch is below a quantile of completed trials' then."""

    enabled: bool = True
    min_epoch: int = 1  # first epoch (1-based) at which a trial may be stopped
    quantile: float = 0.25  # stop when below this quantile of completed trials at that epoch
    min_trials: int = 4  # completed trials needed before anything is stopped


@dataclass(frozen=True)
class StudyRecipe:
    name: str
    space: SearchSpace
    data: str = "synthetic"
    subset: int | None = None
    val_subset: int | None = None
    proxy: dict[str, Any] = field(default_factory=dict)
    objectives: tuple[Objective, ...] = (Objective("accuracy", "max"),
                                         Objective("latency_ms", "min"))
    backend: str = "torch-cpu"
    backend_settings: dict[str, Any] = field(default_factory=dict)
    #: with ``backend: {name: predicted, measure: NAME}``: latency predicted, ``backend`` measures
    prediction: Prediction | None = None
    sampler: str = "tpe"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    resolution: tuple[int, int] | None = None
    early_stopping: EarlyStopping = EarlyStopping()
    enqueue: tuple[str, ...] = ()
    description: str = ""
    path: Path | None = None

    @classmethod
    def load(cls, path: str | Path) -> StudyRecipe:
        path = Path(path)
        data = read_yaml(path, "study recipe")
        try:
            return cls.from_dict(data, name=path.stem, base=path.parent, path=path)
        except ConfigError as e:
            msg = str(e)
            # errors inside the space file already name that file
            raise ConfigError(msg if msg.startswith(("search space", "/")) or ".yaml:" in msg
                              else f"{path}: {msg}") from None

    @classmethod
    def from_dict(cls, data: Any, name: str = "study", base: Path | None = None,
                  path: Path | None = None) -> StudyRecipe:
        if not isinstance(data, dict):
            raise ConfigError(f"a study recipe is a mapping, not {type(data).__name__}")
        reject_unknown_keys(data, TOP_KEYS)
        if "space" not in data:
            raise ConfigError("no 'space' key (a search-space file or a shipped space's name)")
        space = resolve_space(str(data["space"]), base)

        data_raw = data.get("data", "synthetic")
        if isinstance(data_raw, str):
            data_raw = {"spec": data_raw}
        if not isinstance(data_raw, dict):
            raise ConfigError("data: expected a spec string or a mapping with spec/subset/val_subset")
        reject_unknown_keys(data_raw, DATA_KEYS, "data")
        spec = data_raw.get("spec", "synthetic")
        if not isinstance(spec, str) or not spec:
            raise ConfigError(f"data.spec: expected a data spec string, not {spec!r}")
        subset = _opt_pos_int(data_raw, "subset", "data")
        val_subset = _opt_pos_int(data_raw, "val_subset", "data")

        proxy = data.get("proxy") or {}
        if not isinstance(proxy, dict):
            raise ConfigError("proxy: expected a mapping of proxy-training settings")
        proxy = _check_proxy(proxy)

        objectives = _objectives(data.get("objectives", ["accuracy", "latency_ms"]))

        backend_raw = data.get("backend", "torch-cpu")
        if isinstance(backend_raw, str):
            backend_raw = {"name": backend_raw}
        if not isinstance(backend_raw, dict) or "name" not in backend_raw:
            raise ConfigError("backend: expected a backend name or a mapping with 'name'")
        backend = str(backend_raw["name"])
        # batch and threads are ours; any other key goes to the backend, which checks it
        settings = {k: v for k, v in backend_raw.items() if k != "name"}
        prediction = None
        if backend == PREDICTED:
            backend, settings, prediction = _predicted_backend(settings)

        sampler_raw = data.get("sampler")
        if sampler_raw is None:
            # multivariate TPE: the only core sampler above random on the tabular benchmark
            # (docs/search.md, "How good is the search?"); NSGA-II was no better than random
            sampler_raw = "tpe"
        if isinstance(sampler_raw, str):
            sampler_raw = {"name": sampler_raw}
        if not isinstance(sampler_raw, dict) or "name" not in sampler_raw:
            raise ConfigError("sampler: expected a sampler name or a mapping with 'name'")
        sampler = str(sampler_raw["name"]).lower()
        if sampler not in SAMPLERS:
            raise ConfigError(f"sampler: unknown sampler {sampler!r} (valid: {', '.join(SAMPLERS)})")
        sampler_options = {k: v for k, v in sampler_raw.items() if k != "name"}

        seed = data.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed: expected a non-negative integer, not {seed!r}")

        resolution = None
        if data.get("resolution") is not None:
            try:
                resolution = parse_resolution(data["resolution"])
            except ConfigError as e:
                raise ConfigError(f"resolution: {e}") from None

        es_raw = data.get("early_stopping", {})
        if isinstance(es_raw, bool):
            es_raw = {"enabled": es_raw}
        if not isinstance(es_raw, dict):
            raise ConfigError("early_stopping: expected true/false or a mapping")
        reject_unknown_keys(es_raw, EARLY_KEYS, "early_stopping")
        early = EarlyStopping(**es_raw)
        if not 0.0 < early.quantile < 1.0:
            raise ConfigError(f"early_stopping.quantile: must be in (0, 1), not {early.quantile}")

        enqueue = data.get("enqueue") or []
        if isinstance(enqueue, str):
            enqueue = [enqueue]
        for e in enqueue:
            if e not in PRESETS:
                raise ConfigError(f"enqueue: unknown preset {e!r} (presets: {', '.join(PRESETS)})")

        return cls(
            name=str(data.get("name", name)), space=space, data=spec, subset=subset,
            val_subset=val_subset, proxy=proxy, objectives=objectives, backend=backend,
            backend_settings=settings, prediction=prediction, sampler=sampler,
            sampler_options=sampler_options,
            seed=seed, resolution=resolution, early_stopping=early, enqueue=tuple(enqueue),
            description=str(data.get("description", "")), path=path,
        )

    def with_overrides(self, *, backend: str | None = None, data: str | None = None,
                       seed: int | None = None) -> StudyRecipe:
        changes: dict[str, Any] = {}
        if backend == PREDICTED:  # the recipe's own backend measures what must be measured
            changes["prediction"] = self.prediction or Prediction()
        elif backend:  # another backend measures every trial
            changes.update(backend=backend, prediction=None)
        if data:
            # the recipe's images per class were chosen for its own data, not for this one:
            # the new spec's own subset=/val_subset= options (or none) apply
            changes.update(data=data, subset=None, val_subset=None)
        if seed is not None:
            changes["seed"] = seed
        return replace(self, **changes) if changes else self

    def check_backends(self) -> None:
        """Refuse an unknown or unavailable backend, or bad backend settings, before the first
        trial: each trial would otherwise fail on it and be stored as a failed trial."""
        from ..latency import check_backend

        s = dict(self.backend_settings)
        batch, threads = s.pop("batch", 1), s.pop("threads", None)
        b = check_backend(self.backend, batch=batch, threads=threads, **s)
        if self.prediction is not None:
            from ..latency.device_predictor import measuring_backend

            try:
                measuring_backend(b)
            except EdgeExploreError as e:
                raise ConfigError(f"backend: predicted: {e}") from None
            if any(o.name == "energy_mj" for o in self.objectives):
                raise ConfigError("backend: predicted latency comes without energy; drop the "
                                  "energy objective or measure every trial")
        other = self.space.constraints.latency_backend
        if other and other != self.backend:  # as in a trial: the settings are the study backend's
            check_backend(other, batch=batch, threads=threads)

    def space_key(self) -> str:
        """What the sampler sees of the space (its parameters and the model settings), hashed:
        a study resumed with another space would fail its trials on Optuna's distributions and
        mix two searches. Constraints are left out: tightening one on resume is legitimate."""
        sp = self.space
        rows = [r for r in sp.rows() if not r[0].startswith("constraint ")]
        text = json.dumps([rows, sp.macro, sp.qkv_bias, sp.drop_path_rate])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        """How to name this recipe on a command line: a shipped one by name, else its path."""
        if self.path is None:
            return self.name
        if self.path.resolve().parent == studies_dir().resolve():
            return self.path.stem
        return str(self.path)

    def data_key(self) -> dict[str, Any]:
        """What identifies the training data (part of the reuse key)."""
        return {"spec": self.data, "subset": self.subset, "val_subset": self.val_subset,
                "resolution": list(self.resolution) if self.resolution else None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "space": str(self.space.path or self.space.name),
            "data": self.data_key(), "proxy": self.proxy,
            "objectives": [str(o) for o in self.objectives], "backend": self.backend,
            "backend_settings": self.backend_settings,
            "prediction": vars(self.prediction) if self.prediction else None,
            "sampler": self.sampler,
            "sampler_options": self.sampler_options, "seed": self.seed,
            "early_stopping": vars(self.early_stopping), "enqueue": list(self.enqueue),
        }


def _predicted_backend(raw: dict[str, Any]) -> tuple[str, dict[str, Any], Prediction]:
    """``backend: {name: predicted, measure: NAME, min_measured: 8, refit_every: 5, ...}``: the
    backend that measures, its settings (the other keys) and how predictions are used."""
    s = dict(raw)
    measure = s.pop("measure", None)
    if not isinstance(measure, str) or not measure or measure == PREDICTED:
        raise ConfigError("backend: predicted needs 'measure: NAME', the backend that measures "
                          "the trials near the front and trains the predictor (e.g. measure: "
                          "torch-cpu)")
    options = {k: s.pop(k) for k in ("min_measured", "refit_every") if k in s}
    try:
        return measure, s, Prediction(**options)
    except ConfigError as e:
        raise ConfigError(f"backend: {e}") from None


def _opt_pos_int(raw: dict, key: str, where: str) -> int | None:
    v = raw.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ConfigError(f"{where}.{key}: expected a positive integer, not {v!r}")
    return v


def _objectives(raw: Any) -> tuple[Objective, ...]:
    """``[accuracy, latency_ms]``, ``[{accuracy: max}, ...]`` or ``{accuracy: max, ...}``."""
    items: list[tuple[str, str | None]] = []
    if isinstance(raw, str):
        raw = [p.strip() for p in raw.split(",") if p.strip()]
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        for o in raw:
            if isinstance(o, str):
                n, _, d = o.partition(":")
                items.append((n.strip(), d.strip() or None))
            elif isinstance(o, dict) and len(o) == 1:
                items.extend(o.items())
            else:
                raise ConfigError(f"objectives: expected 'name' or 'name: max|min', not {o!r}")
    else:
        raise ConfigError("objectives: expected a list such as [accuracy: max, latency_ms: min]")
    if not items:
        raise ConfigError("objectives: the list is empty")
    out: list[Objective] = []
    try:
        for name, direction in items:
            add(out, make_objective(str(name), direction, SEARCHABLE))
    except ConfigError as e:
        raise ConfigError(f"objectives: {e}") from None
    return tuple(out)


def _check_proxy(proxy: dict[str, Any]) -> dict[str, Any]:
    """Validate against ProxyRecipe when the proxy module is there; keep the plain dict."""
    try:
        from ..training.proxy import ProxyRecipe
    except ImportError:  # pragma: no cover - only while the proxy module is being written
        return dict(proxy)
    try:
        return ProxyRecipe.from_dict(proxy).to_dict()
    except ConfigError as e:
        raise ConfigError(f"proxy: {e}") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"proxy: {e}") from None


def studies_dir() -> Path:
    """``studies/`` of the checkout, or the copy shipped inside the package."""
    return shipped_dir("studies")


def resolve_recipe(spec: str | Path | None) -> Path:
    """A recipe path, or the name of a shipped recipe (default: quickstart)."""
    if spec is None:
        spec = "quickstart"
    p = Path(spec)
    for cand in (p, studies_dir() / p, studies_dir() / f"{spec}.yaml"):
        if cand.is_file():
            return cand
    names = ", ".join(sorted(x.stem for x in studies_dir().glob("*.yaml")))
    raise ConfigError(f"study recipe {spec!r} not found (as a path or a shipped recipe: {names})")
