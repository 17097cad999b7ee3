"""Objectives: a stored metric and whether larger or smaller is better, spelt ``name:max|min``.

The search (which tells Optuna the directions) and the analysis (which ranks stored trials) both
use this one type, and it sits below both so neither imports the other. ``str(objective)`` is the
only spelling written anywhere (recipes, Optuna's study attributes, JSON output); the parser also
reads the long ``maximize``/``minimize`` words, which hand-written recipes may use.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from .errors import ConfigError

Direction = Literal["max", "min"]

#: the direction a metric takes when a spec names it without one
DEFAULT_DIRECTIONS: dict[str, Direction] = {
    "accuracy": "max",
    "full_accuracy": "max",
    "latency_ms": "min",
    "latency_p90_ms": "min",
    "flops": "min",
    "params": "min",
    "activations": "min",
    "energy_mj": "min",
    "images_per_second": "max",
    "train_seconds": "min",
}
#: shorthands for stored column names (Optuna metric names, what users type)
ALIASES = {"acc": "accuracy", "latency": "latency_ms", "energy": "energy_mj", "macs": "flops"}
#: the metrics a search can optimise: those every trial outcome carries
SEARCHABLE = ("accuracy", "latency_ms", "flops", "params", "energy_mj")
DEFAULT_OBJECTIVES = "accuracy:max,latency_ms:min"

_WORDS: dict[str, Direction] = {"max": "max", "min": "min", "maximize": "max", "minimize": "min"}


@dataclass(frozen=True)
class Objective:
    """A stored metric (its column name) and its direction."""

    name: str
    direction: Direction

    @property
    def sign(self) -> float:
        """+1 for minimised objectives, -1 for maximised ones (loss = sign × value)."""
        return 1.0 if self.direction == "min" else -1.0

    @property
    def optuna_direction(self) -> str:
        return "maximize" if self.direction == "max" else "minimize"

    def __str__(self) -> str:
        return f"{self.name}:{self.direction}"


def normalise_name(name: str) -> str:
    name = name.strip().lower()
    return ALIASES.get(name, name)


def make_objective(name: str, direction: object, valid: Collection[str]) -> Objective:
    """One objective from a name (or alias) and a direction word (None: the metric's default)."""
    column = normalise_name(str(name))
    if column not in valid:
        raise ConfigError(f"unknown objective {name!r} (valid: {', '.join(sorted(valid))})")
    given = "" if direction is None else str(direction).strip().lower()
    word = given or DEFAULT_DIRECTIONS.get(column)
    if word not in _WORDS and not given.isalpha():  # e.g. "latency_ms:min;DROP TABLE trials"
        raise ConfigError(f"{f'{name}:{direction}'!r} is not a valid objective: give NAME:max or "
                          f"NAME:min (names: {', '.join(sorted(valid))})")
    if word not in _WORDS:
        raise ConfigError(f"direction of {column} must be max or min, not {direction!r}")
    return Objective(column, _WORDS[word])


def parse_objectives(spec: str | Sequence[str], valid: Collection[str]) -> list[Objective]:
    """``"accuracy:max,latency_ms:min"`` (or a list of such items) → objectives, no repeats."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[Objective] = []
    for part in (p for p in parts if str(p).strip()):
        name, _, direction = str(part).strip().partition(":")
        add(out, make_objective(name, direction or None, valid))
    return out


def add(objectives: list[Objective], obj: Objective) -> None:
    """Append ``obj`` unless its metric is already there (then the spec is wrong)."""
    if any(o.name == obj.name for o in objectives):
        raise ConfigError(f"objective {obj.name!r} is given twice")
    objectives.append(obj)


__all__ = ["ALIASES", "DEFAULT_DIRECTIONS", "DEFAULT_OBJECTIVES", "SEARCHABLE", "Direction",
           "Objective", "make_objective", "normalise_name", "parse_objectives"]
