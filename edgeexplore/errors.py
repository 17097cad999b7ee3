"""Errors a user can act on.

Every exception that is the user's to fix (bad input, missing data, an impossible
architecture) derives from :class:`EdgeExploreError`. The CLI prints its message as one
sentence and exits non-zero; anything else is a bug and keeps its traceback under ``--debug``.
"""

from collections.abc import Iterable


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
