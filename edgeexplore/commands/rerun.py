"""``edgeexplore trials rerun ID``: one stored trial's architecture evaluated again."""

from __future__ import annotations

import click

from .options import SEED, storage_option
from .search import _trial_line


@click.command("rerun")
@click.argument("trial_id", type=int, metavar="ID")
@click.option("--seed", type=SEED, default=None,
              help="Training seed (default: the trial's own when it has no result, e.g. an "
                   "interrupted trial; else the trial's seed + 1).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@storage_option()
def rerun_cmd(trial_id: int, seed: int | None, quiet: bool, storage: str | None) -> None:
    """Evaluate trial ID's architecture again (cost, latency, proxy training) with its recipe
    and backend, into a new trial of the same study; it is not an Optuna trial."""
    from ..analysis.query import open_store
    from ..search.rerun import rerun_trial

    open_store(storage)  # a missing database is an error, never created
    out, study, used = rerun_trial(trial_id, storage, seed, progress=not quiet)
    click.echo(f"Re-ran trial {trial_id} of study {study} with seed {used}: {_trial_line(out)}")
