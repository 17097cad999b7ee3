"""``edgeexplore workers`` and ``copy-study``: one study worked on, and moved, across machines."""

from __future__ import annotations

from dataclasses import asdict

import click

from ..search.liveness import GRACE_S, HEARTBEAT_S, study_workers
from ..store import db
from ..store.copy import copy_study
from .query import FORMATS, _console, _emit_rows, storage_option


def _ago(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f} s"


def _when(value) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


#: the help of `workers` (the heartbeat numbers come from the search loop)
_WORKERS_HELP = f"""Which hosts and processes are working on STUDY right now.

One line per trial in progress: host, process id, trial (our id and Optuna's number), its
architecture, when it started, its last heartbeat and how long ago that was. Workers beat
every {HEARTBEAT_S} s; one silent for more than {GRACE_S} s is marked stale: its process
died or lost the database, and the next `edgeexplore search` of the study marks its trial
failed. Below, per host: trials in progress, finished and stale. Times are UTC as the
workers' clocks wrote them, so keep the hosts' clocks in sync (NTP).
"""


@click.command("workers", help=_WORKERS_HELP)
@click.argument("study")
@storage_option
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@click.option("--hosts", is_flag=True,
              help="With --format csv/json: the per-host summary instead of the running trials.")
def workers_cmd(study: str, storage: str | None, fmt: str, hosts: bool) -> None:
    workers, summary = study_workers(study, storage)
    if fmt != "table":
        _emit_rows([asdict(h) for h in summary] if hosts else [asdict(w) for w in workers], fmt)
        return
    from rich.table import Table

    if workers:
        table = Table(title=f"{len(workers)} trial{'s' if len(workers) != 1 else ''} of {study} "
                      "in progress")
        for col in ("host", "pid", "trial", "number", "architecture", "started (UTC)",
                    "heartbeat (UTC)", "since", ""):
            table.add_column(col, justify="right" if col in ("pid", "trial", "number", "since")
                             else "left")
        for w in workers:
            table.add_row(w.hostname or "-", str(w.pid or "-"), str(w.trial_id),
                          "-" if w.number is None else str(w.number),
                          w.architecture or w.arch_hash or "-", _when(w.started_at),
                          _when(w.heartbeat_at), _ago(w.seconds_since_heartbeat),
                          "stale" if w.stale else "")
        _console().print(table)
    else:
        click.echo(f"No trial of {study} is in progress.")
    table = Table(title="Per host")
    for col in ("host", "running", "finished", "stale"):
        table.add_column(col, justify="left" if col == "host" else "right")
    for h in summary:
        table.add_row(h.hostname or "-", str(h.running), str(h.finished), str(h.stale))
    _console().print(table)


@click.command("copy-study")
@click.argument("name")
@click.option("--from", "from_url", required=True, metavar="URL",
              help="The store that holds the study (database URL or SQLite path).")
@click.option("--to", "to_url", required=True, metavar="URL",
              help="The store to copy it into; must not have a study of that name.")
def copy_study_cmd(name: str, from_url: str, to_url: str) -> None:
    """Copy study NAME with everything of ours that belongs to it into another store.

    Optuna's study and trials, the trial results (linked to the new Optuna ids), their
    architectures, environments and cached latency measurements: e.g. a pilot study on a
    laptop's SQLite file moved to the PostgreSQL server the cluster searches on, or back.
    The source is only read. Nothing is half-copied: on any failure the destination is left as
    it was.

    \b
      edgeexplore copy-study pilot --from pilot.db \\
          --to postgresql+psycopg://me@dbhost/nas
    """
    report = copy_study(name, from_url, to_url)
    click.echo(f"Copied {name} to {db.shown(db.normalise_url(to_url))}: {report.trials} Optuna "
               f"trials, {report.trial_results} trial results, {report.architectures} new "
               f"architectures, {report.environments} new environments, "
               f"{report.latency_measurements} new latency measurements.")


COMMANDS = [workers_cmd, copy_study_cmd]
