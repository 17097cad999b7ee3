"""``edgeexplore trials curves ID...``: the per-epoch learning curves of chosen trials."""

from __future__ import annotations

import click

from ..analysis.curves import curve_rows, load_curves, plot_curves
from .options import format_option, storage_option
from .output import Column, emit, metric_text


def _acc(v):
    return metric_text("accuracy", v)


CURVE_COLUMNS = [Column("id", right=True), Column("study"), Column("epoch", right=True),
                 Column("val_acc", "val acc (%)", _acc, right=True),
                 Column("train_loss", "train loss", right=True), Column("lr", right=True),
                 Column("seconds", right=True)]


@click.command("curves")
@click.argument("trial_ids", nargs=-1, type=int, required=True, metavar="ID...")
@click.option("--plot", "plot_path", default=None, metavar="FILE",
              help="Overlay the curves in FILE.png (or .svg, .pdf) or a self-contained FILE.html.")
@format_option()
@storage_option()
def curves_cmd(trial_ids: tuple[int, ...], plot_path: str | None, fmt: str,
               storage: str | None) -> None:
    """Validation accuracy and training loss per epoch of the trials ID... (one row per epoch;
    --plot overlays them, one line per trial)."""
    curves = load_curves(trial_ids, storage=storage)
    if plot_path:
        plot_curves(curves, plot_path, title="Learning curves: trials "
                    + ", ".join(str(c.id) for c in curves))
    emit(curve_rows(curves), fmt, CURVE_COLUMNS, title="Learning curves")
    if plot_path:
        click.echo(f"Plot written to {plot_path}.", err=True)
