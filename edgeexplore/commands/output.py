"""One renderer for every listing: rows → a rich table, CSV or JSON, with the same columns.

A listing command builds plain rows (dicts of stored values) and a list of :class:`Column`, then
calls :func:`emit`. CSV and JSON come from :mod:`edgeexplore.tabular` (exact values; nested ones
as JSON text in CSV); the table shows the same columns in human units. Table cells and titles
are :class:`rich.text.Text`, so no user- or store-provided string is ever read as markup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click
from rich.text import Text

from ..tabular import columns_of, to_csv, to_json
from ..units import COUNTS, display, human_count
from .options import console


def cell_text(value: Any) -> str:
    """A value as a table shows it when its column has no formatter of its own."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {cell_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(cell_text(v) for v in value)
    return str(value)


def metric_text(name: str, value: Any) -> str:
    """A stored metric in the unit its header names (accuracy in %, FLOPs 5.61 M, ...)."""
    if value is None:
        return "-"
    if name in COUNTS:
        return human_count(value)
    _, _, scale = display(name)
    if scale == 1 and not isinstance(value, float):
        return cell_text(value)
    v = value * scale
    return f"{v:.2f}" if abs(v) >= 1 or v == 0 else f"{v:.3g}"


def metric_header(name: str) -> str:
    label, unit, _ = display(name)
    return label if name in COUNTS or not unit else f"{label} ({unit})"


@dataclass(frozen=True)
class Column:
    """A column of a listing: its key in the rows (and the CSV/JSON name), how a table shows it."""

    key: str
    header: str | None = None
    show: Callable[[Any], str] = cell_text
    right: bool = False

    @classmethod
    def metric(cls, key: str) -> Column:
        return cls(key, metric_header(key), lambda v: metric_text(key, v), right=True)


def emit(rows: Sequence[Mapping[str, Any]], fmt: str, columns: Sequence[Column] | None = None,
         *, title: str = "", empty: str = "Nothing to list.") -> None:
    """Print ``rows`` as ``fmt`` (table, csv or json); every format has the same columns."""
    cols = list(columns) if columns is not None else [Column(k) for k in columns_of(rows)]
    keys = [c.key for c in cols]
    if fmt == "csv":
        click.echo(to_csv(rows, keys), nl=False)
    elif fmt == "json":
        click.echo(to_json(rows, keys), nl=False)
    elif not rows:
        click.echo(empty)
    else:
        console().print(table(rows, cols, title))


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], title: str = ""):
    from rich.table import Table

    t = Table(title=Text(title) if title else None, title_justify="left")
    for c in columns:
        t.add_column(Text(c.header or c.key), justify="right" if c.right else "left")
    for r in rows:
        t.add_row(*(Text(c.show(r.get(c.key))) for c in columns))
    return t


__all__ = ["Column", "cell_text", "emit", "metric_header", "metric_text", "table"]
