"""Where the shipped YAML lives: ``search_spaces/`` and ``studies/`` of a checkout, or the copies
the wheel carries inside the package (``edgeexplore/resources/``, see pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """The folder ``name`` (``search_spaces`` or ``studies``): the checkout's, else the wheel's."""
    for cand in (PACKAGE.parent / name, PACKAGE / "resources" / name):
        if cand.is_dir():
            return cand
    return PACKAGE.parent / name
