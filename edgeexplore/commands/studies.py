"""``edgeexplore studies delete|rename``: removing or renaming a search study in both stores."""

from __future__ import annotations

import click

from .. import interrupts
from ..analysis.query import open_store
from ..errors import EdgeExploreError
from ..store import studies
from ..study_summary import check_study_name
from .options import storage_option

_yes = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


def _confirm(question: str, yes: bool, nothing: str) -> None:
    if yes:
        return
    try:
        answer = click.confirm(question, default=False)
    except click.Abort:  # click's answer to both Ctrl-C and the end of the input
        interrupts.check()  # Ctrl-C: "Interrupted."
        raise EdgeExploreError(f"no answer to the question (the input ended); {nothing} "
                               "(pass --yes to go ahead without asking)") from None
    if not answer:
        raise EdgeExploreError(f"cancelled; {nothing}")


@click.command("delete")
@click.argument("name")
@_yes
@storage_option()
def delete_cmd(name: str, yes: bool, storage: str | None) -> None:
    """Delete study NAME: its trial rows and Optuna's study (architectures stay)."""
    open_store(storage)  # a missing database is an error, never created
    n = studies.study_size(storage, name)
    _confirm(f"Delete study {name!r} ({n} trials) and Optuna's record of it?", yes,
             "nothing was deleted")
    studies.delete_study(storage, name)
    click.echo(f"Deleted study {name!r} ({n} trials).")


@click.command("rename")
@click.argument("old")
@click.argument("new")
@_yes
@storage_option()
def rename_cmd(old: str, new: str, yes: bool, storage: str | None) -> None:
    """Rename study OLD to NEW, in our table and Optuna's, in one transaction."""
    open_store(storage)
    n = studies.study_size(storage, old)
    check_study_name(new)
    _confirm(f"Rename study {old!r} ({n} trials) to {new!r}?", yes, "nothing was renamed")
    studies.rename_study(storage, old, new)
    click.echo(f"Renamed study {old!r} to {new!r} ({n} trials).")
