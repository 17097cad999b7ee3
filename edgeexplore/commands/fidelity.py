"""``edgeexplore fidelity``: retrain some trials longer and say how far the proxy can be trusted.

Thin: :func:`edgeexplore.analysis.fidelity.choose_trials` picks, :mod:`edgeexplore.evaluation.
fidelity` trains (or reuses), :func:`edgeexplore.analysis.fidelity.report` compares.
"""

from __future__ import annotations

import math
from pathlib import Path

import click
from rich.text import Text

from ..tabular import json_text
from .options import console, format_option, storage_option
from .output import Column, emit


def _ci(lo: float, hi: float) -> str:
    return "undefined" if math.isnan(lo) else f"[{lo:.2f}, {hi:.2f}]"


@click.command("fidelity")
@click.argument("study")
@click.option("--top", "top", type=click.IntRange(min=2), default=12, show_default=True,
              help="How many trials to retrain: half spread along the Pareto front, half over "
                   "the rest by proxy accuracy.")
@click.option("--recipe", default="longer-proxy", show_default=True,
              metavar="longer-proxy|edgevit|edgenext|FILE.yaml",
              help="longer-proxy: the study's proxy recipe with --epochs-factor times the "
                   "epochs; otherwise a full-training recipe (as `edgeexplore train --recipe`).")
@click.option("--epochs-factor", type=float, default=3.0, show_default=True,
              help="Epochs of the longer proxy over the study's.")
@click.option("--data", metavar="SPEC", default=None,
              help="Data of a full-training recipe (required there); for longer-proxy, another "
                   "location of the study's data (its subsets are kept).")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              default=Path("fidelity-runs"), show_default=True,
              help="Where full trainings keep their checkpoints (one folder per architecture).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None,
              help="Scatter of proxy against long accuracy (.png, .svg or .pdf).")
@click.option("--device", default=None, help="cpu or cuda, for full trainings.")
@format_option()
@storage_option()
def fidelity_cmd(study, top, recipe, epochs_factor, data, output, plot_path, device, fmt,
                 storage) -> None:
    """Retrain TOP trials of STUDY with a longer recipe and compare the rankings: Kendall's tau
    and Spearman's rho between proxy and long accuracy (bootstrap 95% intervals), the same for
    FLOPs and parameters as baselines, and top-k retrieval. Rerunning reuses every training
    already complete (it continues an interrupted one).

    \b
    Examples:
      edgeexplore fidelity cifar10 --top 12 --epochs-factor 3 --plot fidelity.png
      edgeexplore fidelity cifar10 --top 8 --recipe edgevit --data cifar10 -o runs/fidelity
    """
    from ..analysis import fidelity as analysis
    from ..analysis.figures import plot_path as check_plot
    from ..evaluation import fidelity as training

    if plot_path:
        check_plot(plot_path, page=False)  # a wrong name fails now, not after the trainings
    if device is not None:  # so are a device and data that cannot be used
        from ..training.proxy import resolve_device

        resolve_device(device)
    if data:
        from ..data import check_spec

        check_spec(data)
    trials = analysis.choose_trials(study, top, storage)
    spec = training.long_spec(study, recipe, epochs_factor, data, storage)
    # progress on stderr where stdout is a document for programs
    log = click.echo if fmt == "table" else (lambda s: click.echo(s, err=True))
    log(f"{len(trials)} trials ({sum(c.on_front for c in trials)} on the front), "
        f"{spec.kind} training of {spec.epochs} epochs, key {spec.key}")
    training.retrain(trials, spec, storage, output, device, log)
    rep = analysis.report(study, trials, spec.key, storage)
    if plot_path:
        analysis.plot(rep, plot_path)
    if fmt == "json":
        click.echo(json_text(rep.to_dict()), nl=False)
    elif fmt == "csv":  # the per-trial values; the correlations are in json and the table
        emit(rep.rows(), fmt, COLUMNS)
    else:
        _print(rep)
    if plot_path:
        click.echo(f"Plot written to {plot_path}.", err=True)


COLUMNS = [Column("trial_id", "trial", right=True), Column("number", "#", right=True),
           Column("arch_hash", "architecture"),
           Column("on_front", "front", lambda v: "yes" if v else ""),
           Column.metric("accuracy"),
           Column("long_accuracy", "long top-1 (%)",
                  lambda v: "-" if v is None else f"{100 * v:.2f}", right=True),
           Column.metric("flops"), Column.metric("params")]


def _print(rep) -> None:
    from .output import table

    con = console()
    con.print(table(rep.rows(), COLUMNS,
                    f"Fidelity of study {rep.study} (long key {rep.spec_key})"))
    corr = [("proxy accuracy", rep.proxy), ("FLOPs (baseline)", rep.flops),
            ("parameters (baseline)", rep.params)]
    for name, c in corr:
        if c is None:
            continue
        con.print(Text(f"{name} vs long accuracy: Kendall tau {c.tau:.3f} "
                       f"95% CI {_ci(*c.tau_ci)}, Spearman rho {c.rho:.3f} "
                       f"95% CI {_ci(*c.rho_ci)}"))
    n = len(rep.trials) - rep.missing
    con.print(Text(f"top-{rep.k} retrieval: {rep.retrieved} of the long training's top {rep.k} "
                   f"are in the proxy's top {rep.k} ({n} trials compared)"))
    if rep.missing:
        con.print(Text(f"{rep.missing} chosen trial(s) have no complete long training "
                       "(failed or diverged) and are left out"))
    for note in rep.notes:
        con.print(Text(note))


COMMANDS = [fidelity_cmd]
