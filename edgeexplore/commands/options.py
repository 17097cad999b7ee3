"""Options and the console every command shares, declared once so they read the same everywhere.

* ``storage_option``: ``--storage URL`` (a SQLAlchemy URL or a SQLite path);
* ``format_option``: ``--format table|csv|json`` for listings (see :mod:`.output`);
* ``limit_option``: ``--limit N``, where 0 always means "no limit";
* ``console()``: rich output that never reads a user's text as markup and keeps whole rows when
  piped.
"""

from __future__ import annotations

import functools
import shutil
import sys
from collections.abc import Callable
from typing import Any

import click

STORAGE_HELP = "Database URL or SQLite path (default: $EDGEEXPLORE_STORAGE or edgeexplore.db)."
FORMATS = ("table", "csv", "json")

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

#: the largest integer SQLite stores (a --limit past it cannot be bound)
MAX_SQL_INT = 2**63 - 1
#: a seed every generator takes (NumPy's and Optuna's samplers stop at 2**32 - 1)
SEED = click.IntRange(0, 2**32 - 1)


def storage_option(purpose: str = "") -> Decorator:
    """``--storage``; ``purpose`` says what the command keeps there when it is not the results."""
    text = f"{purpose}: {STORAGE_HELP[0].lower()}{STORAGE_HELP[1:]}" if purpose else STORAGE_HELP
    return click.option("--storage", default=None, metavar="URL", help=text)


def format_option(*extra: str, default: str = "table") -> Decorator:
    """``--format``: table for people, csv and json (same columns, exact values) for programs."""
    choices = [*FORMATS, *extra]
    return click.option(
        "--format", "fmt", type=click.Choice(choices), default=default, show_default=True,
        help="table for reading; csv or json (the same columns, stored values) for programs.",
    )


def json_alias(f: Callable[..., Any]) -> Callable[..., Any]:
    """The older ``--json`` flag, kept so existing scripts work: the same as ``--format json``
    (the command sees ``fmt="json"``; put it under :func:`format_option`)."""
    @functools.wraps(f)
    def command(*args: Any, as_json: bool = False, **kwargs: Any) -> Any:
        if as_json:
            kwargs["fmt"] = "json"
        return f(*args, **kwargs)

    return click.option("--json", "as_json", is_flag=True, hidden=True)(command)


def limit_option(default: int | None = None, what: str = "rows") -> Decorator:
    return click.option(
        "--limit", type=click.IntRange(0, MAX_SQL_INT), default=default, metavar="N",
        show_default=default is not None,
        help=f"Show at most N {what}; 0 for all.",
    )


def console(stderr: bool = False):
    from rich.console import Console

    # Piped output keeps whole rows instead of wrapping at rich's 80-column default. Markup and
    # highlighting are off: study names, reasons and hashes come from users and the store, and
    # "[red]x[/red]" or "[abc]" must print as written. Styled text is built with rich.text.Text.
    width = shutil.get_terminal_size((160, 24)).columns if sys.stdout.isatty() else 200
    return Console(width=width, highlight=False, markup=False, stderr=stderr)
