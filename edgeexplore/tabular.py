"""Rows of results as CSV or JSON text: the one rule every listing and export follows.

A row is a mapping from column name to a plain value. CSV and JSON carry the same columns in the
same order; CSV cells hold what a spreadsheet or ``csv`` reader can use (nested values as JSON
text, ``None`` as an empty cell, ``true``/``false``), never a Python repr. The rich-table form for
people lives in :mod:`edgeexplore.commands.output`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any


def plain(value: Any) -> Any:
    """A value JSON can hold: tuples become lists, dates ISO text, numpy scalars Python ones."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat(sep=" ", timespec="seconds") if hasattr(value, "hour") else (
            value.isoformat())
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; a missing measurement reads the same in both formats
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def csv_cell(value: Any) -> str:
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, (dict, list, bool)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def columns_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every key of the rows, in first-seen order (rows may leave optional keys out)."""
    return list(dict.fromkeys(k for r in rows for k in r))


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    columns = list(columns) if columns is not None else columns_of(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([csv_cell(r.get(c)) for c in columns])
    return buf.getvalue()


def to_json(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    columns = list(columns) if columns is not None else columns_of(rows)
    return json_text([{c: r.get(c) for c in columns} for r in rows])


def json_text(doc: Any) -> str:
    """One JSON document (a listing, a report) by :func:`plain`'s rule: never NaN, never a repr."""
    return json.dumps(plain(doc), indent=1, ensure_ascii=False) + "\n"


__all__ = ["columns_of", "csv_cell", "json_text", "plain", "to_csv", "to_json"]
