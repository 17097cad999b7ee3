"""Errors a user can act on.

Every exception that is the user's to fix (bad input, missing data, an impossible
architecture) derives from :class:`EdgeExploreError`. The CLI prints its message as one
sentence and exits non-zero; anything else is a bug and keeps its traceback under ``--debug``.
"""

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any


class EdgeExploreError(Exception):
    """An error whose message is written for the user."""


class ConfigError(EdgeExploreError, ValueError):
    """An architecture, search space or study recipe that cannot be used as given."""


def reject_unknown_keys(data: Iterable[str], valid: Iterable[str], where: str = "") -> None:
    """Raise ConfigError naming the first key of ``data`` not in ``valid`` (listed in its order)."""
    valid = list(valid)
    unknown = sorted(set(data) - set(valid))
    if unknown:
        prefix = f"{where}: " if where else ""
        raise ConfigError(
            f"{prefix}unknown key {unknown[0]!r} (valid keys: {', '.join(map(str, valid))})"
        )


def dataclass_values(cls: type, values: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """``values`` checked against the fields of dataclass ``cls``: an unknown key is refused, and a
    number given as text for a float field becomes a float (PyYAML reads ``1e-3``, with no dot, as
    a string)."""
    values = dict(values or {})
    fields = dataclasses.fields(cls)
    reject_unknown_keys(values, [f.name for f in fields], where)
    for f in fields:
        if "float" in str(f.type) and isinstance(values.get(f.name), str):
            try:
                values[f.name] = float(values[f.name])
            except ValueError:
                raise ConfigError(f"{where}: {f.name} must be a number, not {values[f.name]!r}"
                                  ) from None
    return values

