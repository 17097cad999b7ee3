"""Errors a user can act on.

Every exception that is the user's to fix (bad input, missing data, an impossible
architecture) derives from :class:`EdgeExploreError`. The CLI prints its message as one
sentence and exits non-zero; anything else is a bug and keeps its traceback under ``--debug``.
"""


class EdgeExploreError(Exception):
    """An error whose message is written for the user."""


class ConfigError(EdgeExploreError, ValueError):
    """An architecture, search space or study recipe that cannot be used as given."""
