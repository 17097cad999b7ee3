"""``edgeexplore workers`` and ``copy-study``: one study worked on, and moved, across machines."""

from __future__ import annotations

from dataclasses import asdict

import click

from ..search.workers import GRACE_S, HEARTBEAT_S, study_workers
from ..store import db
from ..store.copy import copy_study
from .options import console, format_option, storage_option
from .output import Column, emit, table


def _when(value) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


WORKER_COLUMNS = [
    Column("hostname", "host"), Column("pid", right=True), Column("trial_id", "trial", right=True),
    Column("number", right=True), Column("architecture"), Column("arch_hash", "hash"),
    Column("started_at", "started (UTC)", _when), Column("heartbeat_at", "heartbeat (UTC)", _when),
    Column("seconds_since_heartbeat", "since (s)", lambda v: "-" if v is None else f"{v:.0f}",
           right=True),
    Column("stale", show=lambda v: "stale" if v else ""),
]
HOST_COLUMNS = [Column("hostname", "host"), Column("running", right=True),
                Column("finished", right=True), Column("stale", right=True)]


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
@storage_option()
@format_option()
@click.option("--hosts", is_flag=True,
              help="With --format csv/json: the per-host summary instead of the running trials.")
def workers_cmd(study: str, storage: str | None, fmt: str, hosts: bool) -> None:
    workers, summary = study_workers(study, storage)
    if fmt != "table":
        emit([asdict(h) for h in summary] if hosts else [asdict(w) for w in workers], fmt,
             HOST_COLUMNS if hosts else WORKER_COLUMNS)
        return
    n = len(workers)
    emit([asdict(w) for w in workers], fmt, WORKER_COLUMNS,
         title=f"{n} trial{'s' if n != 1 else ''} of {study} in progress",
         empty=f"No trial of {study} is in progress.")
    console().print(table([asdict(h) for h in summary], HOST_COLUMNS, "Per host"))


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
